#!/usr/bin/env python3
"""test_server.py — `simularity serve` over real sockets on loopback.

Models are generated with `simularity synth` (always available); the check
against `simularity run` on stories260K runs when ../shared is present and
says SKIP otherwise. The official `openai` npm package is driven by
openai_client.mjs when node_modules holds it.

Usage: python3 tests/server/test_server.py   (SIM_BIN: the binary, default ./simularity)
Ends with "test_server: N passed, N failed, N skipped"; exit 1 on any failure.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("SIM_BIN", "./simularity")
SHARED = os.environ.get("SIM_SHARED", "../shared")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
counts = {"passed": 0, "failed": 0, "skipped": 0}
# The synthetic vocabulary's byte tokens are ids 3..258; banning bytes 0x80..0xFF
# keeps generated text valid UTF-8 (ASCII) so it compares as text.
HIGH_BYTES = list(range(3 + 0x80, 3 + 0x100))


def ok(name):
    counts["passed"] += 1
    print(f"ok   {name}")


def bad(name, why):
    counts["failed"] += 1
    print(f"FAIL {name}\n  {why}")


def skip(name, why):
    counts["skipped"] += 1
    print(f"SKIP {name}: {why}")


def check(name, cond, why=""):
    (ok(name) if cond else bad(name, why))


class Server:
    """A `simularity serve` process on a free port."""

    def __init__(self, model, *args, ascii_only=True):
        self.ascii_only = ascii_only
        self.p = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0", "-t", "2", *args],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        self.log = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            raise RuntimeError("server did not start: " + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stderr:
            self.log.append(line)

    def request(self, method, path, body=None, headers=None, timeout=60, raw=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode("utf-8")
        c.close()
        try:
            j = json.loads(text)
        except ValueError:
            j = None
        return r.status, j, text, r

    def gen_body(self, path, body):
        if self.ascii_only and path.startswith("/v1/") and isinstance(body, dict) and "logit_bias" not in body:
            body = dict(body, logit_bias={str(i): -100 for i in HIGH_BYTES})
        return body

    def post(self, path, body, **kw):
        return self.request("POST", path, self.gen_body(path, body), **kw)

    def stream(self, path, body, headers=None):
        """Returns the list of SSE data payloads (strings) of a streamed request."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request("POST", path, body=json.dumps(self.gen_body(path, body)), headers=h)
        r = c.getresponse()
        events = []
        if r.status != 200:
            return r.status, [r.read().decode()]
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                for line in ev.decode().split("\n"):
                    if line.startswith("data: "):
                        events.append(line[6:])
        c.close()
        return 200, events

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        try:
            return self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return None


def sse_blocks(r, until=None):
    """Yields (event name, JSON data) from a Server-Sent Events response r as
    they arrive (blocks without an `event:` line are skipped)."""
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            name = data = None
            for line in block.decode("utf-8", "replace").split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if name:
                yield name, data


def stream_text(events):
    """The text of a stream's chunks (completion "text" or chat "delta.content")."""
    out = ""
    for e in events:
        if e == "[DONE]":
            break
        j = json.loads(e)
        if j.get("choices"):
            c = j["choices"][0]
            out += c.get("text", "") if "text" in c else c["delta"].get("content", "") or ""
    return out


def run_cli(model, prompt, n, ascii_only=True):
    bias = [f"--logit-bias={i}-inf" for i in HIGH_BYTES] if ascii_only else []
    r = subprocess.run([BIN, "run", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "2", *bias],
                       capture_output=True, text=True, timeout=60)
    return r.stdout


def test_basics(s, model):
    st, j, _, _ = s.request("GET", "/health")
    check("health", st == 200 and j["status"] == "ok", f"{st} {j}")
    st, j, _, _ = s.request("GET", "/v1/models")
    check("models", st == 200 and j["object"] == "list" and j["data"][0]["id"] == "m.gguf", f"{st} {j}")
    st, j, _, _ = s.request("GET", "/api/props")
    check("props", st == 200 and j["n_ctx_slot"] == 256 and j["total_slots"] == 4, f"{st} {j}")

    # Temperature 0 equals `simularity run`; streamed chunks concatenate to it.
    prompt = "Once upon a time"
    want = run_cli(model, prompt, 24)
    st, j, _, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0})
    got = j["choices"][0]["text"] if st == 200 else None
    check("completion_equals_run", st == 200 and got == want, f"{st} server {got!r} run {want!r}")
    check("completion_usage", st == 200 and j["usage"]["completion_tokens"] == 24 and
          j["choices"][0]["finish_reason"] == "length" and j["object"] == "text_completion", f"{j}")
    st2, toks, _, _ = s.post("/api/tokenize", {"content": prompt, "add_special": True})
    check("usage_prompt_tokens", st2 == 200 and j["usage"]["prompt_tokens"] == len(toks["tokens"]), f"{toks} {j}")
    st, ev = s.stream("/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0, "stream": True})
    check("stream_equals_whole", st == 200 and ev[-1] == "[DONE]" and stream_text(ev) == want,
          f"{st} {stream_text(ev)!r} vs {want!r}")
    final = json.loads(ev[-2])
    check("stream_final_chunk", final["choices"][0]["finish_reason"] == "length" and "usage" in final, f"{final}")
    # The same prompt again: all but its last token come from the cache.
    st, j, _, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 4, "temperature": 0})
    n = j["usage"]["prompt_tokens"]
    check("prefix_cache", j["usage"]["prompt_tokens_details"]["cached_tokens"] == n - 1, f"{j['usage']}")

    # Chat: whole and streamed agree; the stream opens with the role.
    msgs = [{"role": "system", "content": "You are a narrator."}, {"role": "user", "content": "Begin the story."}]
    st, j, _, _ = s.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 20, "temperature": 0})
    whole = j["choices"][0]["message"]["content"] if st == 200 else None
    check("chat_whole", st == 200 and j["object"] == "chat.completion" and
          j["choices"][0]["message"]["role"] == "assistant", f"{st} {j}")
    st, ev = s.stream("/v1/chat/completions", {"messages": msgs, "max_tokens": 20, "temperature": 0, "stream": True,
                                               "stream_options": {"include_usage": True}})
    first = json.loads(ev[0])
    check("chat_stream_role_first", first["choices"][0]["delta"].get("role") == "assistant", f"{first}")
    check("chat_stream_equals_whole", stream_text(ev) == whole, f"{stream_text(ev)!r} vs {whole!r}")
    last = json.loads(ev[-2])
    check("chat_stream_usage_chunk", last["choices"] == [] and last["usage"]["completion_tokens"] == 20, f"{last}")

    # logprobs in both shapes.
    st, j, _, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 5, "temperature": 0, "logprobs": 3})
    lp = j["choices"][0]["logprobs"]
    check("completion_logprobs", len(lp["tokens"]) == 5 and len(lp["top_logprobs"][0]) == 3 and
          all(x <= 0 for x in lp["token_logprobs"]) and "".join(lp["tokens"]) == j["choices"][0]["text"], f"{lp}")
    st, j, _, _ = s.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 5, "temperature": 0,
                                                  "logprobs": True, "top_logprobs": 2})
    c = j["choices"][0]["logprobs"]["content"]
    check("chat_logprobs", len(c) == 5 and len(c[0]["top_logprobs"]) == 2 and
          abs(c[0]["logprob"] - c[0]["top_logprobs"][0]["logprob"]) < 1e-5, f"{c[:1]}")

    # Grammars: GBNF and JSON schema.
    outs = set()
    for seed in range(8):
        st, j, _, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 10, "temperature": 1.5, "seed": seed,
                                                 "grammar": 'root ::= "yes" | "no"'})
        outs.add(j["choices"][0]["text"] if st == 200 else f"error {st}")
    check("grammar", outs <= {"yes", "no"} and outs, f"{outs}")
    schema = {"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]}}, "required": ["mood"]}
    good = 0
    for seed in range(4):
        st, j, _, _ = s.post("/v1/chat/completions", {
            "messages": msgs, "max_tokens": 60, "temperature": 1.0, "seed": seed,
            "response_format": {"type": "json_schema", "json_schema": {"name": "m", "schema": schema}}})
        if st == 200 and j["choices"][0]["finish_reason"] == "stop":
            good += json.loads(j["choices"][0]["message"]["content"])["mood"] in ("happy", "sad")
        elif st == 200:
            good += 1 if j["choices"][0]["message"]["content"].lstrip().startswith("{") else 0
    check("json_schema", good == 4, f"{good}/4")

    # Stop strings are trimmed.
    full = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0})[1]["choices"][0]["text"]
    if len(full) > 6:
        stop = full[3:6]
        j = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": [stop]})[1]
        check("stop_string", j["choices"][0]["text"] == full[:full.index(stop)] and
              j["choices"][0]["finish_reason"] == "stop", f"{j['choices'][0]} stop {stop!r}")

    # tokenize / detokenize round trip.
    st, j, _, _ = s.post("/api/tokenize", {"content": "Hello world", "with_pieces": True})
    ids = [t["id"] for t in j["tokens"]]
    st2, j2, _, _ = s.post("/api/detokenize", {"tokens": ids})
    check("tokenize_roundtrip", st == 200 and st2 == 200 and j2["content"].strip() == "Hello world",
          f"{j} {j2}")


def test_bad_inputs(s):
    def expect(name, status, path, body=None, raw=None, param=None, method="POST", headers=None):
        st, j, text, _ = s.request(method, path, body, raw=raw, headers=headers)
        good = st == status and (j is None or "error" in j or status < 400)
        if good and status >= 400:
            good = isinstance(j, dict) and isinstance(j["error"].get("message"), str) and j["error"]["message"]
            if param is not None:
                good = good and j["error"].get("param") == param
        check(name, good, f"{st} {text[:300]}")

    expect("bad_json", 400, "/v1/completions", raw="{\"prompt\": ")
    st, j, _, _ = s.request("POST", "/v1/completions", raw="{\"prompt\": \"x\",, }")
    check("bad_json_position", st == 400 and "line 1" in j["error"]["message"], f"{j}")
    expect("not_object", 400, "/v1/completions", raw="[1, 2]")
    expect("wrong_type", 400, "/v1/completions", {"prompt": "x", "temperature": "hot"}, param="temperature")
    expect("out_of_range", 400, "/v1/completions", {"prompt": "x", "top_p": 3}, param="top_p")
    expect("too_many_tokens", 400, "/v1/completions", {"prompt": "x", "max_tokens": 10 ** 7}, param="max_tokens")
    expect("missing_prompt", 400, "/v1/completions", {"max_tokens": 3}, param="prompt")
    expect("n_2", 400, "/v1/completions", {"prompt": "x", "n": 2}, param="n")
    expect("bad_messages", 400, "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]},
           param="messages[0]")
    expect("empty_messages", 400, "/v1/chat/completions", {"messages": []}, param="messages")
    expect("bad_grammar", 400, "/v1/completions", {"prompt": "x", "grammar": "root ::= (\"a\""})
    expect("bad_schema", 400, "/v1/completions", {"prompt": "x", "json_schema": {"type": "integr"}}, param="json_schema")
    expect("bad_bias", 400, "/v1/completions", {"prompt": "x", "logit_bias": {"abc": 1}}, param="logit_bias")
    expect("prompt_too_long", 400, "/v1/completions", {"prompt": "word " * 2000}, param="prompt")
    expect("token_out_of_vocab", 400, "/v1/completions", {"prompt": [1, 2, 999999]}, param="prompt")
    expect("bad_detokenize", 400, "/api/detokenize", {"tokens": [-5]}, param="tokens")
    expect("unknown_route", 404, "/v1/nothing", {})
    expect("wrong_method", 405, "/v1/completions", method="GET")
    expect("huge_body", 413, "/v1/completions", raw="{\"prompt\": \"" + "x" * (300 * 1024) + "\"}")
    # Garbage on a raw socket, then the server still answers.
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"\x00\xff garbage \r\n\r\n")
    try:
        sock.recv(1000)
    except OSError:
        pass
    sock.close()
    st, j, _, _ = s.request("GET", "/health")
    check("still_serving", st == 200, f"{st}")
    # A small fuzz over the socket: mutated requests (request line, headers,
    # JSON body); every answer must be a well-formed HTTP response or a
    # close, and the server must keep serving.
    import random
    rng = random.Random(7)
    seed_req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 58\r\n\r\n"
                b'{"prompt": "Once", "max_tokens": 2, "temperature": 0.5}  ')
    statuses = set()
    for i in range(150):
        req = bytearray(seed_req)
        for _ in range(rng.randint(1, 6)):
            k = rng.randrange(len(req))
            op = rng.randrange(3)
            if op == 0:
                req[k] = rng.randrange(256)
            elif op == 1:
                del req[k]
            else:
                req[k:k] = bytes([rng.randrange(256)]) * rng.randint(1, 40)
        try:
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            sock.sendall(bytes(req))
            sock.shutdown(socket.SHUT_WR)
            resp = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                resp += chunk
            sock.close()
        except OSError:
            resp = b""
        if resp:
            m = re.match(rb"HTTP/1\.[01] (\d{3}) ", resp)
            statuses.add(int(m.group(1)) if m else -1)
    st, j, _, _ = s.request("GET", "/health")
    check("socket_fuzz", st == 200 and -1 not in statuses and statuses <= {200, 400, 404, 405, 413, 414, 431, 501, 505},
          f"health {st}, statuses {sorted(statuses)}")


def test_concurrency(s):
    prompts = [f"Story number {i} begins" for i in range(16)]
    want = {}
    for p in prompts:  # one at a time first
        want[p] = s.post("/v1/completions", {"prompt": p, "max_tokens": 12, "temperature": 0})[1]["choices"][0]["text"]
    got = {}

    def client(p, streamed):
        try:
            if streamed:
                st, ev = s.stream("/v1/completions", {"prompt": p, "max_tokens": 12, "temperature": 0, "stream": True})
                got[p] = stream_text(ev)
            else:
                got[p] = s.post("/v1/completions", {"prompt": p, "max_tokens": 12, "temperature": 0},
                                timeout=120)[1]["choices"][0]["text"]
        except Exception as e:  # noqa: BLE001 - reported as a mismatch
            got[p] = f"error {e}"

    threads = [threading.Thread(target=client, args=(p, i % 2 == 0)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    wrong = [p for p in prompts if got.get(p) != want[p]]
    check("16_concurrent_clients", not wrong, f"{len(wrong)} differ, e.g. {wrong[:1]}: "
          f"{got.get(wrong[0]) if wrong else ''!r} vs {want[wrong[0]] if wrong else ''!r}")


def slots_busy(s):
    _, _, text, _ = s.request("GET", "/metrics")
    m = re.search(r"^simularity_slots_busy (\d+)", text, re.M)
    return int(m.group(1)) if m else -1, text


def long_stream_socket(s, body):
    """Starts a streamed request on a raw socket and reads its first event."""
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    got = b""
    while b"data: " not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return sock, got


def test_disconnect_and_busy(model):
    s = Server(model, "-c", "256", "--slots", "1", "--queue", "1", "--max-tokens", "100000")
    try:
        endless = {"prompt": "Once", "max_tokens": 100000, "temperature": 1.0, "stream": True,
                   "logit_bias": {str(i): -100 for i in (1, 2)}}
        sock, first = long_stream_socket(s, endless)
        busy, _ = slots_busy(s)
        check("stream_running", b"data: " in first and busy == 1, f"{first[:200]} busy={busy}")
        # A second request waits in the queue, a third finds it full.
        sock2, _ = None, None
        results = {}

        def queued():
            results["q"] = s.post("/v1/completions", {"prompt": "Twice", "max_tokens": 3}, timeout=60)[0]
        t = threading.Thread(target=queued)
        t.start()
        time.sleep(0.5)
        st, j, _, r = s.post("/v1/completions", {"prompt": "Thrice", "max_tokens": 3})
        check("queue_full_503", st == 503 and r.getheader("Retry-After") is not None and "error" in j, f"{st} {j}")
        sock.close()  # the client leaves: its slot frees, the queued request runs
        t.join(30)
        check("queued_runs_after_disconnect", results.get("q") == 200, f"{results}")
        deadline = time.time() + 5
        busy = -1
        while time.time() < deadline:
            busy, text = slots_busy(s)
            if busy == 0:
                break
            time.sleep(0.05)
        check("disconnect_frees_slot", busy == 0, f"busy={busy}")
        _, text = slots_busy(s)
        m = re.search(r"^simularity_requests_rejected_total (\d+)", text, re.M)
        check("metrics", m and int(m.group(1)) == 1 and "simularity_generated_tokens_total" in text and
              'simularity_slot_state{slot="0"}' in text, text[:500])
        # SIGTERM with a stream in flight: the stream ends properly, exit 0.
        sock, _ = long_stream_socket(s, endless)
        time.sleep(0.2)
        s.p.send_signal(signal.SIGTERM)
        rest = b""
        sock.settimeout(10)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except OSError:
            pass
        sock.close()
        rc = s.p.wait(timeout=20)
        check("graceful_shutdown", rc == 0 and b"data: [DONE]" in rest, f"rc={rc} tail={rest[-200:]!r}")
    finally:
        if s.p.poll() is None:
            s.p.kill()


def test_auth(model):
    keys = os.path.join(TMP, "keys.txt")
    with open(keys, "w") as f:
        f.write("# keys\nsecret-two\n")
    tmpl = os.path.join(TMP, "chat.jinja")
    with open(tmpl, "w") as f:
        f.write("{% for m in messages %}[{{ m.role | upper }}] {{ m.content | trim }}\n{% endfor %}"
                "{% if add_generation_prompt %}[ASSISTANT]{% endif %}")
    s = Server(model, "--api-key", "secret-one", "--api-keys", keys, "-c", "256", "--slots", "2",
               "--cors", "https://play.example", "--chat-template-file", tmpl)
    try:
        st, j, _, r = s.request("GET", "/v1/models")
        check("auth_missing_401", st == 401 and j["error"]["type"] == "authentication_error", f"{st} {j}")
        st, _, _, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
        check("auth_wrong_401", st == 401, f"{st}")
        st1, _, _, _ = s.request("GET", "/v1/models", headers={"Authorization": "Bearer secret-one"})
        st2, _, _, r = s.request("GET", "/v1/models", headers={"Authorization": "Bearer secret-two"})
        check("auth_keys_200", st1 == 200 and st2 == 200, f"{st1} {st2}")
        check("cors_header", r.getheader("Access-Control-Allow-Origin") == "https://play.example", f"{r.getheaders()}")
        st, _, _, _ = s.request("GET", "/health")
        check("health_public", st == 200, f"{st}")
        # The chat template given on the command line renders the prompt.
        key = {"Authorization": "Bearer secret-one"}
        st, j, _, _ = s.request("GET", "/api/props", headers=key)
        check("chat_template_file", st == 200 and j["chat_template"].startswith("{% for m in") and
              not j["chat_template_fallback"], f"{st} {j}")
        msgs = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
        st, j, _, _ = s.post("/v1/chat/completions", {"messages": msgs, "max_tokens": 2}, headers=key)
        text = "[SYSTEM] Be brief.\n[USER] Hi\n[ASSISTANT]"
        st2, toks, _, _ = s.post("/api/tokenize", {"content": text, "add_special": True}, headers=key)
        check("chat_template_renders", st == 200 and st2 == 200 and j["usage"]["prompt_tokens"] == len(toks["tokens"]),
              f"{st} {j} {toks}")
    finally:
        s.stop()


def test_run_equality_stories(shared_model):
    s = Server(shared_model, "-c", "512", "--slots", "2", ascii_only=False)
    try:
        for prompt in ("Once upon a time", "The little dog"):
            want = run_cli(shared_model, prompt, 40, ascii_only=False)
            st, j, _, _ = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 40, "temperature": 0})
            got = j["choices"][0]["text"]
            check(f"stories260K_equals_run[{prompt}]", got == want, f"{got!r} vs {want!r}")
            st, ev = s.stream("/v1/completions", {"prompt": prompt, "max_tokens": 40, "temperature": 0, "stream": True})
            check(f"stories260K_stream[{prompt}]", stream_text(ev) == want, f"{stream_text(ev)!r}")
    finally:
        s.stop()


def test_openai_package(s):
    node_mod = os.path.join(ROOT, "node_modules", "openai")
    if not os.path.isdir(node_mod):
        skip("openai_npm", "node_modules/openai is absent (npm ci installs it)")
        return
    r = subprocess.run(["node", os.path.join(HERE, "openai_client.mjs"), f"http://127.0.0.1:{s.port}/v1"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    for line in r.stdout.splitlines():
        if line.startswith("ok "):
            ok("openai_npm_" + line[3:].strip())
        elif line.startswith("FAIL "):
            bad("openai_npm_" + line[5:].strip(), "")
        elif line.strip():
            print("  " + line)
    if r.returncode != 0:
        bad("openai_npm", f"exit {r.returncode}: {r.stderr[-1000:]}")


def main():
    global TMP
    TMP = tempfile.mkdtemp(prefix="sim-server-")
    model = os.path.join(TMP, "m.gguf")
    subprocess.run([BIN, "synth", "-o", model, "--vocab", "512", "--dim", "64", "--layers", "2", "--ctx", "4096"],
                   check=True, capture_output=True)
    s = Server(model, "-c", "1024", "--slots", "4", "--max-body-kb", "256")
    try:
        test_basics(s, model)
        test_bad_inputs(s)
        test_concurrency(s)
        test_openai_package(s)
    finally:
        rc = s.stop()
        check("exit_0_on_sigterm", rc == 0, f"exit {rc}")
    test_disconnect_and_busy(model)
    test_auth(model)
    stories = os.path.join(SHARED, "models", "stories260K.gguf")
    if os.path.exists(stories):
        test_run_equality_stories(stories)
    else:
        skip("stories260K_equals_run", f"{stories} is absent")
    subprocess.run(["rm", "-rf", TMP])
    print(f"test_server: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

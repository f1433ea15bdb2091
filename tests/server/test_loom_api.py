#!/usr/bin/env python3
"""test_loom_api.py — the LLooM and mixing endpoints of `simularity serve`
over real sockets, on models generated here (always runs): the streamed tree
(node / depth / done events) equals `simularity loom --json` for the same
parameters, the streamed mix equals `simularity mix --json`, bad requests are
refused before any stream starts.

Usage: python3 tests/server/test_loom_api.py   (SIM_BIN: the binary)
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, Server, check, counts, sse_blocks  # noqa: E402


def sse(s, path, body):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        return r.status, json.loads(r.read())
    out = list(sse_blocks(r))
    c.close()
    return 200, out


def main():
    tmp = tempfile.mkdtemp(prefix="sim-loom-")
    a, b = os.path.join(tmp, "a.gguf"), os.path.join(tmp, "b.gguf")
    for path, seed in ((a, "1"), (b, "2")):
        subprocess.run([BIN, "synth", "-o", path, "--vocab", "512", "--dim", "64", "--layers", "2", "--seed", seed],
                       check=True, capture_output=True)
    text = "The lighthouse keeper"
    s = Server(a, "--mix-model", b, "--loom-ctx", "2048")
    try:
        params = {"depth": 5, "cutoff": 0.0028, "split": 3, "max": 10}
        st, ev = sse(s, "/api/loom", dict(params, text=text))
        names = [e[0] for e in ev] if st == 200 else []
        done = [e[1] for e in ev if e[0] == "done"]
        nodes = [e[1] for e in ev if e[0] == "node"]
        check("loom_stream", st == 200 and names[-1] == "done" and nodes and "depth" in names, f"{st} {names[:8]}")
        check("loom_nodes_count", done and done[0]["nodes"] == len(nodes), f"{len(nodes)} vs {done[:1]}")
        cli = json.loads(subprocess.run([BIN, "loom", "-m", a, "-p", text, "--depth", "5", "--cutoff", "0.0028", "--split",
                                         "3", "--max", "10", "--json"], check=True, capture_output=True, text=True).stdout)
        api = [(x["text"], round(x["score"], 4), x["tokens"]) for x in done[0]["suggestions"]] if done else []
        ref = [(x["text"], round(x["score"], 4), x["tokens"]) for x in cli["suggestions"]]
        check("loom_equals_cli", api == ref and len(api) > 1, f"{api[:3]} vs {ref[:3]}")
        # parents come before children; every leaf's branch is a suggestion's prefix chain
        ids = set()
        ordered = True
        for n in nodes:
            ordered &= n["parent"] == -1 or n["parent"] in ids
            ids.add(n["id"])
        check("loom_nodes_ordered", ordered)
        st, ev = sse(s, "/api/mix", {"text": text, "mode": "reference", "n": 6})
        toks = [e[1] for e in ev if e[0] == "token"] if st == 200 else []
        cli = json.loads(subprocess.run([BIN, "mix", "-m", a, "-m", b, "-p", text, "-n", "6", "--mode", "reference",
                                         "--json"], check=True, capture_output=True, text=True).stdout)
        check("mix_equals_cli", [(t["text"], t["model"], t["disagree"]) for t in toks] ==
              [(t["text"], t["model"], t["disagree"]) for t in cli["tokens"]] and len(toks) == 6, f"{toks[:3]} {cli['tokens'][:3]}")
        check("mix_probs_per_model", toks and all(len(t["probs"]) == 2 for t in toks))
        st, j, _, _ = s.request("GET", "/api/loom/models")
        check("loom_models", st == 200 and [m["index"] for m in j["models"]] == [0, 1], f"{st} {j}")
        for body, frag in [({"depth": 3}, '"text" is required'), ({"text": "x", "depth": 0}, '"depth" must be'),
                           ({"text": "x", "cutoff": 2}, '"cutoff" must be'), ({"text": "x", "autostop": 1}, '"autostop"')]:
            st, j = sse(s, "/api/loom", body)
            check(f"loom_bad[{json.dumps(body)[:30]}]", st == 400 and frag in j["error"]["message"], f"{st} {j}")
        st, j = sse(s, "/api/mix", {"text": "x", "mode": "chaos"})
        check("mix_bad_mode", st == 200 and j[-1][0] == "error" and "mode" in j[-1][1]["message"], f"{st} {j}")
    finally:
        s.stop()
    s = Server(a)
    try:
        st, j = sse(s, "/api/mix", {"text": "x"})
        check("mix_needs_two_models", st == 400 and "--mix-model" in j["error"]["message"], f"{st} {j}")
    finally:
        s.stop()
    subprocess.run(["rm", "-rf", tmp])
    print(f"test_loom_api: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

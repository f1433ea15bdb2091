#!/usr/bin/env python3
"""serve_load.py — a bounded loopback load test of `simularity serve`.

Starts the server on MODEL with 16 slots and, for 1, 4 and 16 concurrent
streams, sends streamed completions of N tokens (different prompts, so no
prefix is shared) and measures the aggregate generated tokens/s and the time
to first token. Each level runs ROUNDS requests per stream.

Usage: python3 bench/serve_load.py MODEL [--tokens 64] [--rounds 2] [--threads 2] [--json]
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

BIN = os.environ.get("SIM_BIN", "./simularity")


def start(model, threads, slots, ctx):
    p = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0", "-t", str(threads), "--slots", str(slots),
                          "-c", str(ctx), "--max-tokens", "100000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1))
    raise RuntimeError("the server did not start")


def one_stream(port, prompt, n_tokens):
    """Returns (seconds to first token, total seconds, tokens generated)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": n_tokens, "temperature": 0.8, "seed": 1, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    ttft, n, buf = None, 0, b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if not ev.startswith(b"data: ") or ev == b"data: [DONE]":
                continue
            j = json.loads(ev[6:])
            if j.get("choices") and j["choices"][0].get("text") and ttft is None:
                ttft = time.perf_counter() - t0
            if j.get("usage") and not j.get("choices"):
                n = j["usage"]["completion_tokens"]
    total = time.perf_counter() - t0
    c.close()
    return ttft if ttft is not None else total, total, n


def level(port, streams, n_tokens, rounds, tag):
    results = []
    lock = threading.Lock()

    def worker(k):
        for r in range(rounds):
            res = one_stream(port, f"Story {tag}-{k}-{r}: once upon a time, in a land far away,", n_tokens)
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(streams)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    toks = sum(r[2] for r in results)
    ttfts = [r[0] * 1000 for r in results]
    return {"streams": streams, "requests": len(results), "tokens": toks, "seconds": wall,
            "aggregate_tps": toks / wall, "per_stream_tps": statistics.mean(r[2] / r[1] for r in results),
            "ttft_ms_median": statistics.median(ttfts), "ttft_ms_max": max(ttfts)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    p, port = start(a.model, a.threads, 16, 16 * 256)
    try:
        one_stream(port, "warm up", 4)
        rows = [level(port, n, a.tokens, a.rounds, f"L{n}") for n in (1, 4, 16)]
    finally:
        p.terminate()
        p.wait(timeout=30)
    if a.json:
        print(json.dumps({"model": os.path.basename(a.model), "levels": rows,
                          "speedup_4_vs_1": rows[1]["aggregate_tps"] / rows[0]["aggregate_tps"],
                          "speedup_16_vs_1": rows[2]["aggregate_tps"] / rows[0]["aggregate_tps"]}))
        return 0
    print(f"serve load test: {os.path.basename(a.model)}, {a.tokens} tokens per request, {a.rounds} rounds per stream")
    print(f"{'streams':>7} {'requests':>8} {'agg tok/s':>10} {'per-stream':>10} {'TTFT med ms':>12} {'TTFT max ms':>12}")
    for r in rows:
        print(f"{r['streams']:>7} {r['requests']:>8} {r['aggregate_tps']:>10.1f} {r['per_stream_tps']:>10.1f} "
              f"{r['ttft_ms_median']:>12.0f} {r['ttft_ms_max']:>12.0f}")
    print(f"aggregate speed-up: 4 streams {rows[1]['aggregate_tps'] / rows[0]['aggregate_tps']:.2f}x, "
          f"16 streams {rows[2]['aggregate_tps'] / rows[0]['aggregate_tps']:.2f}x over 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())

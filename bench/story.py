#!/usr/bin/env python3
"""The story engine's benchmark (make bench runs it after the others).

On the 1.1B benchmark model (build/bench/llama-1.1b.q4_k_m.gguf) and the demo
scenario, through `simularity play --json`:
  1. a 50-update scripted story (25 player lines, 25 model lines): prompt
     tokens processed per model turn vs the prompt's size — only the new
     lines and the volatile part (the stage now) should be processed;
  2. the story saved, then resumed in a fresh process: time to the first
     token of the next line with the save's KV state file vs without it
     (the whole prompt re-processed), in the same run.
"""
import json, os, shutil, subprocess, sys, tempfile

BIN = os.environ.get("SIM_BIN", "./simularity")
MODEL = sys.argv[1] if len(sys.argv) > 1 else "build/bench/llama-1.1b.q4_k_m.gguf"
ARGS = ["-c", "8192", "-t", "2", "--max-line-tokens", "20", "--seed", "1"]


def play(db, script, extra=()):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(script)
    out = subprocess.run([BIN, "play", "scenarios/demo", "-m", MODEL, "--db", db, "--script", f.name, "--json", *ARGS,
                          *extra], capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    return [json.loads(l) for l in out.splitlines()]


tmp = tempfile.mkdtemp()
db = os.path.join(tmp, "bench.db")
script = "".join("say Tell me more about the light, please.\nadvance\n" for _ in range(25)) + "save bench\n"
ev = play(db, script)
turns = [e["turn"] for e in ev if e["event"] == "line" and "turn" in e]
steady = turns[1:]  # the first turn processes the setup
mean = lambda xs: sum(xs) / len(xs)
print("story: %d model turns; prompt %d -> %d tokens" % (len(turns), turns[0]["prompt"], turns[-1]["prompt"]))
print("  first turn processed %d prompt tokens (the setup)" % turns[0]["prompt_decoded"])
print("  later turns: %.1f prompt tokens processed per turn on average (max %d) of %.0f in the prompt: %.1f%%" % (
    mean([t["prompt_decoded"] for t in steady]), max(t["prompt_decoded"] for t in steady),
    mean([t["prompt"] for t in steady]), 100 * mean([t["prompt_decoded"] / t["prompt"] for t in steady])))
growth = mean([b["prompt"] - a["prompt"] for a, b in zip(steady, steady[1:])])
print("  the prompt grows %.1f tokens per turn (two new lines); the rest processed is the volatile part" % growth)
print("  all tokens decoded per turn incl. forced clock text and phase re-evaluations: %.1f" % mean([t["decoded"] for t in steady]))

story = [e for e in ev if e["event"] == "state"][-1]["story"]
warm = play(db, "advance\n", ["--story", str(story)])
w = [e["turn"] for e in warm if e["event"] == "line"][0]
shutil.move(db + ".states", db + ".states.off")
os.mkdir(db + ".states")
cold = play(db, "advance\n", ["--story", str(story)])
c = [e["turn"] for e in cold if e["event"] == "line"][0]
print("resume a %d-token story: first token after %.0f ms from the save's state file (%d tokens processed) vs "
      "%.0f ms re-processing (%d tokens): %.1fx faster" % (c["prompt"], w["ms_first_token"], w["prompt_decoded"],
                                                          c["ms_first_token"], c["prompt_decoded"],
                                                          c["ms_first_token"] / w["ms_first_token"]))
shutil.rmtree(tmp)

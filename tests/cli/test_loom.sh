#!/bin/sh
# CLI tests of `simularity loom` and `simularity mix` through the real binary
# on generated models (and stories260K when ../shared is there): JSON shape,
# ordering, the batched/naive comparison, per-token attribution, errors.
# Usage: sh tests/cli/test_loom.sh   (SIM_BIN: the binary, default ./simularity)
. tests/cli/harness.inc

$BIN synth -o "$T/a.gguf" --vocab 320 --dim 64 --seed 1 >/dev/null 2>&1 && ok synth_a || bad synth_a
$BIN synth -o "$T/b.gguf" --vocab 320 --dim 64 --seed 2 >/dev/null 2>&1 && ok synth_b || bad synth_b

# --- loom ---------------------------------------------------------------------------------
if $BIN loom -m "$T/a.gguf" -p "ab cd" --cutoff 0 --split 2 --depth 4 --max 10 --no-autostop --json >"$T/l.json" 2>"$T/err" &&
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
s = d["suggestions"]
assert 1 <= len(s) <= 10, len(s)
assert all(set(x) == {"text", "score", "tokens"} for x in s)
assert all(len(x["tokens"]) == 4 for x in s)
assert [x["score"] for x in s] == sorted((x["score"] for x in s), reverse=True)
assert len({tuple(x["tokens"]) for x in s}) == len(s)  # texts: invalid UTF-8 bytes print as U+FFFD
' "$T/l.json"; then ok loom_json; else bad loom_json "$(head -c 300 "$T/err")"; fi
if $BIN loom -m "$T/a.gguf" -p "ab cd" --cutoff 0 --split 3 --depth 5 --compare >"$T/out" 2>"$T/err" &&
    grep -q "^batched: .* (5 decode calls" "$T/err" && grep -q "^naive: .* (120 decode calls" "$T/err" &&
    grep -q "^ratio: " "$T/err" && grep -q "^agree:   25 of 25 suggestions$" "$T/err"; then ok loom_compare; else bad loom_compare "$(head -c 400 "$T/err")"; fi
n=$($BIN loom -m "$T/a.gguf" -p "ab cd" --cutoff 0 --split 3 --depth 3 --max 7 2>/dev/null | wc -l)
[ "$n" -eq 7 ] && ok loom_plain_max || bad loom_plain_max "$n lines"
expect_error loom_bad_cutoff "cutoff must be between 0 and 1" $BIN loom -m "$T/a.gguf" -p hi --cutoff 2
expect_error loom_bad_depth "depth must be" $BIN loom -m "$T/a.gguf" -p hi --depth 0
expect_error loom_no_prompt "exactly one of -p" $BIN loom -m "$T/a.gguf"
if [ -f "$SHARED/models/stories260K.gguf" ]; then
    out=$($BIN loom -m "$SHARED/models/stories260K.gguf" -p "Once upon a time " --json 2>/dev/null)
    echo "$out" | python3 -c '
import json, sys
s = json.load(sys.stdin)["suggestions"]
assert s[0]["text"] == ", there was a little girl named Lily.", s[0]
' && ok loom_story_trailing_space || bad loom_story_trailing_space "$out"
else skip loom_story_trailing_space "$SHARED/models/stories260K.gguf absent"; fi

# --- mix ----------------------------------------------------------------------------------
for mode in round-robin democratic reference; do
    if $BIN mix -m "$T/a.gguf" -m "$T/b.gguf" -p "ab cd" --mode $mode --turn 2 -n 8 --json >"$T/m.json" 2>"$T/err" &&
        python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); mode = sys.argv[2]
t = d["tokens"]
assert len(t) == 8 and d["mode"] == mode and len(d["models"]) == 2
assert "".join(x["text"] for x in t) == d["text"]
assert all(len(x["probs"]) == 2 and isinstance(x["disagree"], bool) for x in t)
if mode == "round-robin": assert [x["model"] for x in t] == [0, 0, 1, 1, 0, 0, 1, 1]
if mode == "reference": assert all(x["model"] == 0 for x in t)
' "$T/m.json" $mode; then ok "mix_json_$mode"; else bad "mix_json_$mode" "$(head -c 300 "$T/err")"; fi
done
$BIN mix -m "$T/a.gguf" -m "$T/b.gguf" -p "ab cd" -n 4 >"$T/out" 2>"$T/err" && [ "$(wc -l <"$T/out")" -eq 1 ] &&
    grep -q "model 1 (b.gguf): 2 tokens" "$T/err" && ok mix_plain || bad mix_plain "$(head -c 300 "$T/err")"
expect_error mix_one_model "give 2 to 4 models" $BIN mix -m "$T/a.gguf" -p hi
expect_error mix_bad_mode "--mode must be" $BIN mix -m "$T/a.gguf" -m "$T/b.gguf" -p hi --mode vote
expect_error mix_no_prompt "give the prompt with -p or -f" $BIN mix -m "$T/a.gguf" -m "$T/b.gguf"
expect_error mix_missing_model "none.gguf: cannot open" $BIN mix -m "$T/a.gguf" -m "$T/none.gguf" -p hi

echo "test_loom.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

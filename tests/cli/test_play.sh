#!/bin/sh
# simularity play: the story engine through the real binary, on the demo
# scenario with a model generated here (so it always runs): a scripted story
# with every operation checked from the --json events, resuming a save
# without re-processing, and bad input (unknown commands, a corrupt
# database, a broken scenario) refused with precise messages.
. tests/cli/harness.inc
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

$BIN synth -o "$T/tiny.gguf" --vocab 400 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 >/dev/null 2>&1 &&
    ok play_synth || bad play_synth
PLAY="$BIN play scenarios/demo -m $T/tiny.gguf -c 16384 --max-line-tokens 24 --temp 1.5 --min-p 0 --top-p 1"

cat >"$T/script" <<'S'
# a scripted story
advance
advance
say Good evening. Is the lamp lit?
advance
regenerate
variants
choose 1
edit A line the player rewrote.
history
bogus
rewind 2
advance
save checkpoint one
state
fork A new branch
advance
S
timeout 120 $PLAY --db "$T/db" --script "$T/script" --json --seed 4 >"$T/out.jsonl" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && ok play_script_exit_0 || bad play_script_exit_0 "exit $rc: $(head -c 300 "$T/err")"
$PY - "$T/out.jsonl" <<'PY' && ok play_script_events || bad play_script_events "$(cat "$T/py.err" 2>/dev/null)"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
lines = [e for e in ev if e["event"] == "line"]
kinds = [e["event"] for e in ev]
# 4 opening lines, then: advance, advance, say, advance, regenerate, (rewind) advance
assert [l["update"]["source"] for l in lines[:4]] == ["script"] * 4, lines[:4]
assert len(lines) == 11, len(lines)
assert lines[6]["update"]["source"] == "player" and lines[6]["update"]["text"] == "Good evening. Is the lamp lit?"
reg = lines[8]
assert reg["variant"] == 2 and reg["variants"] == 2 and reg["update"]["parent"] == lines[7]["update"]["parent"], reg
v = [e for e in ev if e["event"] == "variants"][0]
assert v["ids"] == [lines[7]["update"]["id"], reg["update"]["id"]] and v["chosen"] == 2, v
ed = [e for e in ev if e["event"] == "edited"][0]["update"]
assert ed["edit_of"] == lines[7]["update"]["id"] and ed["text"] == "A line the player rewrote.", ed
hist = [e for e in ev if e["event"] == "history"][0]["lines"]
assert [h["id"] for h in hist[:7]] == [l["update"]["id"] for l in lines[:7]] and hist[-1]["id"] == ed["id"], hist
errs = [e for e in ev if e["event"] == "error"]
assert len(errs) == 1 and "unknown command 'bogus'" in errs[0]["message"], errs
after_rewind = lines[9]["update"]
assert after_rewind["parent"] == 2, after_rewind
assert any(e["event"] == "saved" for e in ev)
st = [e for e in ev if e["event"] == "state"]
assert st[0]["head"] == after_rewind["id"] and st[0]["lines"] == 3, st[0]
fork = [e for e in ev if e["event"] == "forked"][0]
assert fork["story"] == 2 and st[-1]["story"] == 2 and st[-1]["lines"] == 4, (fork, st[-1])
# every model line's speaker is the narrator or a character allowed and on stage (the engine's grammar)
for l in lines:
    assert l["update"]["speaker"] in ("narrator", "player", "edda", "tobin", "nell"), l
    assert "\n" not in l["update"]["text"] and l["update"]["text"], l
# text deltas add up to the line
for i, e in enumerate(ev):
    if e["event"] == "line" and e["update"]["source"] == "model":
        j = i - 1
        parts = []
        while ev[j]["event"] == "text":
            parts.insert(0, ev[j]["text"]); j -= 1
        assert "".join(parts).rstrip("\n").rstrip() == e["update"]["text"], (parts, e)
PY

# Resume: the save's KV state file makes the next turn reuse the whole prompt.
printf 'advance\n' >"$T/s2"
timeout 120 $PLAY --db "$T/db" --story 1 --script "$T/s2" --json --seed 4 >"$T/resume.jsonl" 2>"$T/err"; rc=$?
$PY - "$T/resume.jsonl" <<'PY' && ok play_resume_reuses_prompt || bad play_resume_reuses_prompt "exit $rc: $(head -c 300 "$T/resume.jsonl")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
t = [e for e in ev if e["event"] == "line"][0]["turn"]
# only the volatile part (the stage now) can differ from the saved prompt
assert t["reused"] >= t["prompt"] - 200 and t["prompt"] > 2000, t
PY
rm -rf "$T/db.states"
timeout 120 $PLAY --db "$T/db" --story 1 --script "$T/s2" --json --seed 4 >"$T/cold.jsonl" 2>"$T/err"
$PY - "$T/cold.jsonl" <<'PY' && ok play_without_state_reprocesses || bad play_without_state_reprocesses "$(head -c 300 "$T/cold.jsonl")"
import json, sys
t = [json.loads(l) for l in open(sys.argv[1]) if '"line"' in l][0]["turn"]
assert t["reused"] == 0 and t["decoded"] >= t["prompt"], t
PY

# Bad input.
cp "$T/db" "$T/corrupt.db"
printf 'garbage garbage garbage' | dd of="$T/corrupt.db" bs=1 seek=4096 conv=notrunc 2>/dev/null
cp "$T/corrupt.db" "$T/corrupt.orig"
timeout 60 $PLAY --db "$T/corrupt.db" --script "$T/s2" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "corrupt\|not a database\|malformed" "$T/err" && cmp -s "$T/corrupt.db" "$T/corrupt.orig" &&
    ok play_corrupt_db_refused_untouched || bad play_corrupt_db_refused_untouched "exit $rc: $(head -c 300 "$T/err")"
printf 'not sqlite' >"$T/text.db"
timeout 60 $PLAY --db "$T/text.db" --script "$T/s2" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && [ "$(cat "$T/text.db")" = "not sqlite" ] && ok play_not_a_db || bad play_not_a_db "exit $rc: $(head -c 300 "$T/err")"
mkdir -p "$T/broken" && printf '{"version": 1}' >"$T/broken/manifest.json"
timeout 60 $BIN play "$T/broken" -m "$T/tiny.gguf" --script "$T/s2" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "simularity check" "$T/err" && ok play_broken_scenario || bad play_broken_scenario "exit $rc: $(head -c 300 "$T/err")"
timeout 60 $BIN play scenarios/demo -m "$T/tiny.gguf" --db "$T/db2" --episode nope --script "$T/s2" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "no episode 'nope'" "$T/err" && ok play_unknown_episode || bad play_unknown_episode "exit $rc: $(cat "$T/err")"
timeout 60 $BIN play scenarios/demo -m "$T/tiny.gguf" --db "$T/db3" -c 1024 --script "$T/s2" --json >"$T/out" 2>"$T/err"
grep -q '"event":"error".*use a context of at least' "$T/out" && ok play_small_context_message || bad play_small_context_message "$(grep error "$T/out" | head -c 300)"

echo "test_play: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

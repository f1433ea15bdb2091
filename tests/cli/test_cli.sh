#!/bin/sh
# CLI tests: the commands' interfaces, outputs and error handling, through
# the real binary. Models are generated with `simularity synth`; tests that
# need ../shared say SKIP when it is absent.
# Usage: sh tests/cli/test_cli.sh   (SIM_BIN: the binary, default ./simularity)
. tests/cli/harness.inc

# --- models made here ----------------------------------------------------------------
$BIN synth -o "$T/tiny.gguf" --vocab 400 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 >/dev/null 2>&1 &&
    ok synth_tiny || bad synth_tiny
$BIN synth -o "$T/qwen.gguf" --arch qwen2 --vocab 400 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --tied \
    --type f16 >/dev/null 2>&1 && ok synth_qwen2 || bad synth_qwen2

# --- usage and argument errors ----------------------------------------------------------
$BIN >/dev/null 2>&1; [ $? -eq 1 ] && ok no_command_exit_1 || bad no_command_exit_1
$BIN --help | grep -q "usage: simularity" && ok help || bad help
expect_error unknown_option "unknown option '--bogus'" $BIN run -m "$T/tiny.gguf" -p hi --bogus
expect_error missing_value "needs a value" $BIN run -m "$T/tiny.gguf" -p
expect_error bad_number "not a valid number" $BIN run -m "$T/tiny.gguf" -p hi --temp abc
expect_error prompt_twice "exactly one of -p" $BIN run -m "$T/tiny.gguf" -p hi -f /dev/null

# --- bad model files: one line naming the file, exit 1, never a crash or hang ----------------
expect_error missing_file "$T/none.gguf: cannot open" $BIN run -m "$T/none.gguf" -p hi
printf 'hello, this is not a model\n' >"$T/text.gguf"
expect_error not_gguf "$T/text.gguf: not a GGUF file" $BIN run -m "$T/text.gguf" -p hi
: >"$T/empty.gguf"
expect_error empty_file "$T/empty.gguf: not a GGUF file" $BIN info -m "$T/empty.gguf"
expect_error directory "not a regular file" $BIN info -m "$T"
for n in 3 10 100 2000 20000 60000; do
    head -c $n "$T/tiny.gguf" >"$T/trunc.gguf"
    expect_error "truncated_$n" "$T/trunc.gguf: " $BIN run -m "$T/trunc.gguf" -p hi -n 4
done
# corrupt bytes in the tensor-info area: errors or runs, but always exits 0/1 cleanly
size=$(wc -c <"$T/tiny.gguf")
crashes=0
for off in 0 4 8 16 24 40 100 500 1000 3000 5000 9000 12000 15000 17000 18000; do
    cp "$T/tiny.gguf" "$T/corrupt.gguf"
    printf '\377\377\377\377\377\377\377\377' | dd of="$T/corrupt.gguf" bs=1 seek=$off conv=notrunc 2>/dev/null
    timeout 20 $BIN run -m "$T/corrupt.gguf" -p hi -n 2 >/dev/null 2>"$T/err"; rc=$?
    [ $rc -gt 1 ] && { crashes=$((crashes + 1)); echo "  offset $off: exit $rc: $(head -c 200 "$T/err")"; }
done
[ $crashes -eq 0 ] && ok corrupted_headers || bad corrupted_headers "$crashes crashes"
# an unsupported architecture and an unsupported tensor type, made with python
python3 - "$T" <<'PY'
import struct, sys
d = sys.argv[1]
def s(x): b = x.encode(); return struct.pack('<Q', len(b)) + b
def gguf(kvs, tensors, data):
    out = struct.pack('<IIQQ', 0x46554747, 3, len(tensors), len(kvs))
    for k, v in kvs: out += s(k) + struct.pack('<I', 8) + s(v)
    for name, ne, ty in tensors:
        out += s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', n) for n in ne) + struct.pack('<IQ', ty, 0)
    out += b'\0' * ((32 - len(out) % 32) % 32)
    return out + data
open(d + '/mamba.gguf', 'wb').write(gguf([('general.architecture', 'mamba')], [('x', [32], 0)], b'\0' * 128))
open(d + '/iq2.gguf', 'wb').write(gguf([('general.architecture', 'llama')], [('x', [256], 16)], b'\0' * 128))
PY
expect_error unsupported_type "$T/iq2.gguf: tensor 'x' has unsupported type 16" $BIN run -m "$T/iq2.gguf" -p hi
cp "$T/mamba.gguf" "$T/arch.gguf"
# (the vocab is checked first: give the file a vocab by asking synth to borrow none — expect the tokenizer error)
expect_error missing_tokenizer "$T/arch.gguf: " $BIN run -m "$T/arch.gguf" -p hi

# --- run ---------------------------------------------------------------------------------
out=$($BIN run -m "$T/tiny.gguf" -p "abc" -n 12 --temp 0 2>"$T/err"); rc=$?
[ $rc -eq 0 ] && grep -q "generation: 12 tokens" "$T/err" && ok run_greedy_12 || bad run_greedy_12 "$(cat "$T/err")"
out2=$($BIN run -m "$T/tiny.gguf" -p "abc" -n 12 --temp 0 -t 1 2>/dev/null)
[ "$out" = "$out2" ] && ok run_threads_same_text || bad run_threads_same_text
a=$($BIN run -m "$T/tiny.gguf" -p "abc" -n 20 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 --seed 7 2>/dev/null)
b=$($BIN run -m "$T/tiny.gguf" -p "abc" -n 20 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 --seed 7 2>/dev/null)
c=$($BIN run -m "$T/tiny.gguf" -p "abc" -n 20 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 --seed 8 2>/dev/null)
[ "$a" = "$b" ] && [ "$a" != "$c" ] && ok run_seeded || bad run_seeded "seed 7: '$a' / '$b', seed 8: '$c'"
# With shifting off a full context ends generation: the last sampled token is printed, not decoded.
np=$($BIN tokenize -m "$T/tiny.gguf" -p "abc" | wc -w)
timeout 20 $BIN run -m "$T/tiny.gguf" -p "abc" -c 16 --temp 0 --no-context-shift --ignore-eos >/dev/null 2>"$T/err"
grep -q "context is full" "$T/err" && grep -q "generation: $((16 - np + 1)) tokens" "$T/err" && ok run_context_full ||
    bad run_context_full "$(cat "$T/err")"
expect_error run_prompt_too_long "context holds 8" $BIN run -m "$T/tiny.gguf" -p "abcdefghijklmnopqrstuvwxyz" -c 8 --no-context-shift
$BIN run -m "$T/qwen.gguf" -p "hello" -n 5 --kv-type f32 >/dev/null 2>&1 && ok run_qwen2_f32_kv || bad run_qwen2_f32_kv
printf 'a prompt from a file' >"$T/prompt.txt"
$BIN run -m "$T/tiny.gguf" -f "$T/prompt.txt" -n 3 >/dev/null 2>&1 && ok run_prompt_file || bad run_prompt_file

if [ -f "$SHARED/models/stories260K.gguf" ]; then
    want=' She loved to play outside in the park. One day, she saw a big, red ball.'
    got=$($BIN run -m "$SHARED/models/stories260K.gguf" -f "$SHARED/golden/short.txt" --temp 0 -n 40 2>/dev/null)
    case "$got" in "$want"*) ok run_stories260K_greedy ;; *) bad run_stories260K_greedy "got '$got'" ;; esac
else skip run_stories260K_greedy "$SHARED/models is absent"; fi

# --- runtime features: context shift, prompt cache, healing, grammars, parallel, RoPE ---------------
timeout 60 $BIN run -m "$T/tiny.gguf" -p "abc" -c 64 -n 300 --ignore-eos --temp 0.8 --seed 3 >/dev/null 2>"$T/err"
grep -q "generation: 300 tokens" "$T/err" && ok run_shifts_past_context || bad run_shifts_past_context "$(cat "$T/err")"
printf 'a fairly long prompt that we will cache: one two three four five six seven' >"$T/p.txt"
$BIN run -m "$T/tiny.gguf" -f "$T/p.txt" -n 4 --prompt-cache "$T/cache.bin" >/dev/null 2>"$T/err1"
$BIN run -m "$T/tiny.gguf" -f "$T/p.txt" -n 4 --prompt-cache "$T/cache.bin" >/dev/null 2>"$T/err2"
np=$($BIN tokenize -m "$T/tiny.gguf" -f "$T/p.txt" | wc -w)
[ -s "$T/cache.bin" ] && grep -q "(0 cached, $np decoded)" "$T/err1" && grep -q "($((np - 1)) cached, 1 decoded)" "$T/err2" &&
    ok prompt_cache_reused || bad prompt_cache_reused "$(cat "$T/err1" "$T/err2")"
printf 'garbage' >"$T/cache.bin"
$BIN run -m "$T/tiny.gguf" -f "$T/p.txt" -n 4 --prompt-cache "$T/cache.bin" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && grep -q "prompt cache not used: $T/cache.bin: truncated" "$T/err" && ok prompt_cache_corrupt_refused ||
    bad prompt_cache_corrupt_refused "exit $rc: $(cat "$T/err")"
$BIN run -m "$T/qwen.gguf" -f "$T/p.txt" -n 4 --prompt-cache "$T/cache2.bin" >/dev/null 2>&1
$BIN run -m "$T/tiny.gguf" -f "$T/p.txt" -n 4 --prompt-cache "$T/cache2.bin" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && grep -q "prompt cache not used: .*model" "$T/err" && ok prompt_cache_other_model_refused ||
    bad prompt_cache_other_model_refused "exit $rc: $(cat "$T/err")"
printf 'root ::= "yes" | "no" ("!" | "?")\n' >"$T/yn.gbnf"
for seed in 1 2 3 4 5; do
    out=$($BIN run -m "$T/tiny.gguf" -p "answer:" --grammar-file "$T/yn.gbnf" --temp 2 --seed $seed -n 20 2>/dev/null)
    case "$out" in yes|no!|"no?") ;; *) bad "grammar_output_seed_$seed" "'$out'"; continue ;; esac
    ok "grammar_output_seed_$seed"
done
printf 'root ::= "a" (\n' >"$T/bad.gbnf"
expect_error grammar_error_line_column "bad.gbnf: line 1, column 14: unterminated group" $BIN run -m "$T/tiny.gguf" -p hi --grammar-file "$T/bad.gbnf"
cat >"$T/schema.json" <<'JSON'
{"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "age": {"type": "integer"},
 "mood": {"enum": ["happy", "sad"]}}, "required": ["name", "age", "mood"]}
JSON
for seed in 1 2 3; do
    $BIN run -m "$T/tiny.gguf" -p "json:" --json-schema "$T/schema.json" --temp 1.5 --seed $seed -n 200 >"$T/j.json" 2>/dev/null
    python3 - "$T/j.json" <<'PY' && ok "json_schema_seed_$seed" || bad "json_schema_seed_$seed" "$(cat "$T/j.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {'name', 'age', 'mood'} and isinstance(d['age'], int) and d['mood'] in ('happy', 'sad')
assert isinstance(d['name'], str) and len(d['name']) <= 6
PY
done
echo '{"type": "object", "properties": {"a": {"type": "integr"}}}' >"$T/bad.json"
expect_error json_schema_error_path '/properties/a/type' $BIN run -m "$T/tiny.gguf" -p hi --json-schema "$T/bad.json"
out=$($BIN run -m "$T/tiny.gguf" -p "abc" -n 8 --parallel 3 --temp 1.2 --seed 9 2>"$T/err")
[ "$(echo "$out" | grep -c '^--- continuation [123] ---$')" = 3 ] && grep -q "generation: 24 tokens" "$T/err" &&
    ok run_parallel_3 || bad run_parallel_3 "$out $(cat "$T/err")"
$BIN run -m "$T/tiny.gguf" -p "abc" -n 8 -c 256 --rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 64 >/dev/null 2>&1 &&
    ok run_yarn || bad run_yarn
expect_error rope_scaling_name "rope-scaling must be" $BIN run -m "$T/tiny.gguf" -p hi --rope-scaling wild
if [ -f "$SHARED/models/stories260K.gguf" ]; then
    timeout 120 $BIN run -m "$SHARED/models/stories260K.gguf" -p "Once upon a time" -c 128 -n 1000 --ignore-eos \
        >"$T/long.txt" 2>"$T/err"
    grep -q "generation: 1000 tokens" "$T/err" && python3 -c "open('$T/long.txt', encoding='utf-8').read()" &&
        ok run_stories260K_1000_tokens_in_128 || bad run_stories260K_1000_tokens_in_128 "$(tail -3 "$T/err")"
    # "ti" is " t" + "i" in this vocabulary: dynamic healing rolls both back and writes " time".
    got=$($BIN run -m "$SHARED/models/stories260K.gguf" -p "Once upon a ti" --heal dynamic --temp 0 -n 5 2>/dev/null)
    case "$got" in me*) ok heal_dynamic_once_upon_a_ti ;; *) bad heal_dynamic_once_upon_a_ti "got '$got'" ;; esac
    # "hap" is " ha" + "p": rolling back the last token lets the model write "py" (unhealed: "fized").
    got=$($BIN run -m "$SHARED/models/stories260K.gguf" -p "Once upon a time, she was very hap" --heal last --temp 0 -n 3 2>/dev/null)
    case "$got" in py*) ok heal_last_hap ;; *) bad heal_last_hap "got '$got'" ;; esac
else skip run_stories260K_1000_tokens_in_128 "$SHARED/models is absent"; fi

# --- tokenize, logits, info ---------------------------------------------------------------------
ids=$($BIN tokenize -m "$T/tiny.gguf" -p "ab" 2>&1)
echo "$ids" | grep -qE '^1( [0-9]+)+$' && ok tokenize_bos || bad tokenize_bos "$ids"
ids=$($BIN tokenize -m "$T/tiny.gguf" -p "ab" --no-bos 2>&1)
echo "$ids" | grep -qE '^[0-9]+( [0-9]+)*$' && ! echo "$ids" | grep -qE '^1 ' && ok tokenize_no_bos || bad tokenize_no_bos "$ids"
if [ -f "$SHARED/vocab/ggml-vocab-gpt-2.gguf" ]; then
    got=$($BIN tokenize -m "$SHARED/vocab/ggml-vocab-gpt-2.gguf" -p "Hello world" 2>&1)
    [ "$got" = "15496 995" ] && ok tokenize_vocab_only || bad tokenize_vocab_only "got '$got'"
    expect_error vocab_only_cannot_run "ggml-vocab-gpt-2.gguf: unsupported architecture 'gpt2'" $BIN run -m "$SHARED/vocab/ggml-vocab-gpt-2.gguf" -p hi
else skip tokenize_vocab_only "$SHARED/vocab is absent"; fi
$BIN logits -m "$T/tiny.gguf" -p "abc" --top 5 >"$T/l.json" 2>"$T/err" &&
python3 - "$T/l.json" <<'PY' && ok logits_json || bad logits_json "$(cat "$T/err")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d['model'] == 'tiny.gguf' and d['prompt'] == 'abc', d
assert len(d['top_logits']) == len(d['tokens']) and d['tokens'][0] == 1
for row in d['top_logits']:
    assert len(row) == 5
    assert all(row[i][1] >= row[i + 1][1] for i in range(4))
PY
if [ -f "$SHARED/golden/synth-llama-256.f16.short.json" ]; then
    $BIN logits -m "$SHARED/models/synth-llama-256.f16.gguf" -f "$SHARED/golden/short.txt" >"$T/g.json" 2>/dev/null &&
    python3 - "$T/g.json" "$SHARED/golden/synth-llama-256.f16.short.json" <<'PY' && ok logits_vs_golden || bad logits_vs_golden
import json, sys
o, g = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert o['tokens'] == g['tokens'] and o['prompt'] == g['prompt']
for orow, grow in zip(o['top_logits'], g['top_logits']):
    mine = dict((i, l) for i, l in orow)
    for i, l in grow[:5]:
        assert i in mine and abs(mine[i] - l) <= 0.02, (i, mine.get(i), l)
PY
else skip logits_vs_golden "$SHARED/golden is absent"; fi
info=$($BIN info -m "$T/tiny.gguf" -c 100 2>&1)
# KV bytes per token: 2 × 2 layers × 2 KV heads × 16 dims × 2 bytes = 256
echo "$info" | grep -q "256 bytes per token" && echo "$info" | grep -q "architecture:  llama" &&
    echo "$info" | grep -q "for a context of 100" && ok info || bad info "$info"

# --- quantize ------------------------------------------------------------------------------------
$BIN synth -o "$T/wide.gguf" --vocab 512 --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 >/dev/null 2>&1
for ty in q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_m q4_k_s q4_k_m q5_k_s q5_k_m q6_k f16 bf16; do
    if $BIN quantize "$T/wide.gguf" "$T/q.gguf" $ty >/dev/null 2>"$T/err" &&
       $BIN run -m "$T/q.gguf" -p "ab" -n 3 >/dev/null 2>&1; then ok "quantize_$ty"
    else bad "quantize_$ty" "$(cat "$T/err")"; fi
done
$BIN quantize "$T/wide.gguf" "$T/q.gguf" q4_k_m >/dev/null 2>&1
types=$($BIN info -m "$T/q.gguf" | grep "tensor types")
echo "$types" | grep -q "q4_K" && echo "$types" | grep -q "q6_K" && ok quantize_q4_k_m_mix || bad quantize_q4_k_m_mix "$types"
expect_error quantize_bad_type "unknown type 'q9_9'" $BIN quantize "$T/wide.gguf" "$T/q.gguf" q9_9
expect_error quantize_same_file "overwrite the input" $BIN quantize "$T/wide.gguf" "$T/wide.gguf" q8_0

# --- bench ---------------------------------------------------------------------------------------
$BIN bench -m "$T/tiny.gguf" -p 16 -n 4 -r 1 --json >"$T/b.json" 2>"$T/err" &&
python3 - "$T/b.json" <<'PY' && ok bench_json || bad bench_json "$(cat "$T/err")"
import json, sys
d = json.load(open(sys.argv[1]))
for k in ('pp_tps', 'tg_tps', 'bandwidth_gbs', 'tg_bandwidth_fraction'):
    assert k in d and d[k] > 0, (k, d)
PY

out=$($BIN bench --runtime -m "$T/tiny.gguf" -p 200 2>&1)
echo "$out" | grep -q "^conversation: 10 turns" && echo "$out" | grep -q "^state file: .*(1 token decoded)" &&
    echo "$out" | grep -q "^shift: " && echo "$out" | grep -q "^grammar: " && ok bench_runtime || bad bench_runtime "$out"

# --- serve: startup errors (the server itself: tests/server/test_server.py) -----------------------
expect_error serve_missing_model "$T/none.gguf: cannot open" $BIN serve -m "$T/none.gguf"
expect_error serve_bad_port "port must be 0..65535" $BIN serve -m "$T/tiny.gguf" --port 70000
expect_error serve_bad_slots "slots must be 1..64" $BIN serve -m "$T/tiny.gguf" --slots 0
expect_error serve_missing_keys "api-keys: $T/nokeys: cannot open" $BIN serve -m "$T/tiny.gguf" --api-keys "$T/nokeys"
printf 'abc\n{%% if %%}' >"$T/bad.jinja"
expect_error serve_bad_template "chat template: line 2, column 7" $BIN serve -m "$T/tiny.gguf" --chat-template-file "$T/bad.jinja" --port 0
expect_error serve_bad_host "cannot listen on .300.1.2.3.: not an IPv4 or IPv6 address" $BIN serve -m "$T/tiny.gguf" --host 300.1.2.3 --port 0


# --- check: scenario packs (the example of docs/scenario-format.md, each asset holding its path) ------
mkdir -p "$T/pier"
python3 - "$T/pier" <<'PY' && ok check_fixture || bad check_fixture
import json, os, re, sys
d = sys.argv[1]
doc = open('docs/scenario-format.md', encoding='utf-8').read()
m = json.loads(re.search(r'```json\n(.*?)\n```', doc, re.S).group(1))
json.dump(m, open(os.path.join(d, 'manifest.json'), 'w', encoding='utf-8'), ensure_ascii=False, indent=2)
def assets(x):
    if isinstance(x, dict):
        if 'sha256' in x: yield x['path']
        for v in x.values(): yield from assets(v)
    elif isinstance(x, list):
        for v in x: yield from assets(v)
for a in set(assets(m)):
    os.makedirs(os.path.dirname(os.path.join(d, a)), exist_ok=True)
    open(os.path.join(d, a), 'w').write(a + '\n')
PY
# Debian's python3 has python3-jsonschema from `make deps`; another python3 may have it too.
PYJS=python3
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null && PYJS=/usr/bin/python3
if $PYJS -c 'import jsonschema' 2>/dev/null; then
    $PYJS - "$T/pier/manifest.json" <<'PY' && ok check_schema_accepts_example || bad check_schema_accepts_example
import json, sys, jsonschema
s = json.load(open('docs/scenario.schema.json'))
jsonschema.Draft202012Validator.check_schema(s)
jsonschema.Draft202012Validator(s).validate(json.load(open(sys.argv[1])))
PY
else skip check_schema_accepts_example "python3 jsonschema is not installed"; fi
out=$($BIN check "$T/pier" 2>"$T/err"); rc=$?
[ $rc -eq 0 ] && [ ! -s "$T/err" ] && echo "$out" | grep -q "^scenario: *The Pier (pier)" &&
    echo "$out" | grep -q "^locales: *en-US fr-FR" && echo "$out" | grep -q "^characters: *1" &&
    echo "$out" | grep -q "^scenes: *1" && echo "$out" | grep -q "^episodes: *1" &&
    echo "$out" | grep -q "^assets: *7 files, 147 bytes" && ok check_valid_summary || bad check_valid_summary "exit $rc: $out $(cat "$T/err")"
cp -r "$T/pier" "$T/pier2"
echo tampered >"$T/pier2/sprites/mira/smile.png"
expect_error check_wrong_hash "$T/pier2/manifest.json: characters\[0\]\.expressions\[1\]\.layers\.standing\.sha256: does not match the file 'sprites/mira/smile.png' (its SHA-256 is [0-9a-f]*) (fix: " \
    $BIN check "$T/pier2"
sed -i 's/"scene": "pier"/"scene": "peir"/; s/"color": "#3a7bd5"/"color": "blue"/' "$T/pier2/manifest.json"
$BIN check "$T/pier2" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && [ ! -s "$T/out" ] && [ "$(wc -l <"$T/err")" -eq 3 ] &&
    grep -q "episodes\[0\]\.start\.scene: no scene has the id 'peir'" "$T/err" &&
    grep -q "characters\[0\]\.color: 'blue' is not a colour (fix: write it as #rrggbb" "$T/err" &&
    ok check_every_problem || bad check_every_problem "exit $rc: $(cat "$T/err")"
printf '{\n  "version": 1,\n  oops\n}\n' >"$T/pier2/manifest.json"
expect_error check_bad_json "$T/pier2/manifest.json: line 3, column" $BIN check "$T/pier2"
expect_error check_not_a_folder "$T/none is not a folder" $BIN check "$T/none"
expect_error check_no_dir "check: give one scenario folder" $BIN check

# --- check on zip packs ------------------------------------------------------------------------------
python3 - "$T" <<'PY'
import os, sys, zipfile
t = sys.argv[1]
with zipfile.ZipFile(os.path.join(t, 'pier.zip'), 'w', zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk(os.path.join(t, 'pier')):
        for f in files:
            full = os.path.join(root, f)
            z.write(full, os.path.relpath(full, t))  # inside one top folder, pier/
with zipfile.ZipFile(os.path.join(t, 'evil.zip'), 'w') as z:
    z.writestr('manifest.json', '{}')
    z.writestr('../evil.png', 'x')
PY
out=$($BIN check "$T/pier.zip" 2>"$T/err"); rc=$?
[ $rc -eq 0 ] && [ ! -s "$T/err" ] && echo "$out" | grep -q "^assets: *7 files, 147 bytes" && ok check_zip ||
    bad check_zip "exit $rc: $out $(cat "$T/err")"
expect_error check_zip_hostile "$T/evil.zip/manifest.json: entry '../evil.png': the path leaves the folder with '..' (fix: rebuild the zip" \
    $BIN check "$T/evil.zip"

# --- import-card: SillyTavern cards into scenario folders ----------------------------------------------
cat >"$T/card.json" <<'JSON'
{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Ada Quill", "description": "{{char}} writes letters to {{user}}.",
 "personality": "curious", "scenario": "A post office.", "first_mes": "Hello, {{user}}!", "mes_example": "", "creator_notes": "",
 "system_prompt": "", "post_history_instructions": "", "alternate_greetings": ["Mail for you."], "tags": [], "creator": "",
 "character_version": "", "extensions": {},
 "character_book": {"extensions": {}, "entries": [{"keys": ["stamp"], "content": "Stamps cost a penny.", "extensions": {},
  "enabled": true, "insertion_order": 3, "name": "Stamps"}]}}}
JSON
out=$($BIN import-card "$T/card.json" "$T/ada" 2>"$T/err"); rc=$?
[ $rc -eq 0 ] && [ "$out" = "created $T/ada: scenario 'ada-quill' with character 'ada-quill', 2 episodes, 1 lore entry" ] &&
    grep -q "^note: a JSON card has no picture" "$T/err" && ok import_card_new || bad import_card_new "exit $rc: $out $(cat "$T/err")"
$BIN check "$T/ada" >"$T/out" 2>"$T/err" && grep -q "^characters: *1" "$T/out" && grep -q "^episodes: *2" "$T/out" &&
    ok import_card_checks || bad import_card_checks "$(cat "$T/err")"
cp "$T/ada/manifest.json" "$T/ada.before"
expect_error import_card_duplicate "a character with the id 'ada-quill' already exists (give another with --id NEW)" \
    $BIN import-card "$T/card.json" "$T/ada"
cmp -s "$T/ada/manifest.json" "$T/ada.before" && ok import_card_unchanged || bad import_card_unchanged
out=$($BIN import-card "$T/card.json" "$T/ada" --id ada-2 2>/dev/null); rc=$?
[ $rc -eq 0 ] && [ "$out" = "added character 'ada-2' to $T/ada (2 characters now), 1 lore entry" ] && ok import_card_id ||
    bad import_card_id "exit $rc: $out"
# Into the two-locale example: every text in every locale, and the pack still checks.
out=$($BIN import-card "$T/card.json" "$T/pier" 2>/dev/null); rc=$?
[ $rc -eq 0 ] && grep -q '"fr-FR": "Ada Quill writes letters to You."' "$T/pier/manifest.json" && ok import_card_locales ||
    bad import_card_locales "exit $rc: $out"
expect_error import_card_missing "$T/nocard.json" $BIN import-card "$T/nocard.json" "$T/x"
expect_error import_card_args "import-card: give a card file and a scenario folder" $BIN import-card "$T/card.json"
$BIN import-card --help 2>&1 | grep -q "usage: simularity import-card CARD DIR" && ok import_card_help || bad import_card_help

echo "test_cli.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

#!/bin/sh
# CLI tests for `simularity sprite` (docs/sprites.md): a sprite set and
# backgrounds generated with micro-sd15 (a tiny real SD 1.5-shaped pipeline:
# its images are noise-like, keyed here with a large tolerance) into a copy
# of scenarios/demo. Checked with Python (zlib + struct + hashlib, not our
# code): the files, the manifest's ids, paths, sha256s and placements, the
# canvas, the head box and the contact sheet's size; `simularity check`; a
# re-run leaves the manifest byte-identical; bad input gives one precise
# error and leaves the manifest byte-identical.
# Usage: sh tests/cli/test_sprite.sh   (SIM_BIN: the binary, SIM_SHARED: the shared data)
. tests/cli/harness.inc
MODEL=$SHARED/diffusion/micro-sd15
D=$T/demo
cp -r scenarios/demo "$D"
cp "$D/manifest.json" "$T/orig.json"

$BIN --help | grep -q "^  sprite" && ok sprite_listed || bad sprite_listed
$BIN sprite --help >"$T/out" 2>&1 && grep -q -- "--expressions" "$T/out" && grep -q -- "--background" "$T/out" && ok sprite_help || bad sprite_help

# --- bad input: one precise error, the manifest unchanged ------------------------------------
unchanged() { cmp -s "$D/manifest.json" "$T/orig.json" && ok "$1_unchanged" || bad "$1_unchanged" "the manifest changed"; }
SET="--base a --outfits {casual|coat} --expressions {happy|sad}"
expect_error bad_dir "sprite: --scenario $T/none: No such file or directory" $BIN sprite mira --scenario "$T/none" -m "$MODEL" $SET
expect_error bad_id "'Mira Vale' is not a valid character id" $BIN sprite "Mira Vale" --scenario "$D" -m "$MODEL" $SET
unchanged bad_id
expect_error reserved_id "'narrator' is not a valid character id" $BIN sprite narrator --scenario "$D" -m "$MODEL" $SET
expect_error empty_expansion "expressions: expansion 2 ('') has no letter to make an id of" \
    $BIN sprite mira --scenario "$D" -m "$MODEL" --base a --outfits coat --expressions '{happy|}'
unchanged empty_expansion
expect_error empty_outfits "outfits: expansion 1 ('') has no letter" $BIN sprite mira --scenario "$D" -m "$MODEL" --base a --outfits '' --expressions x
expect_error bad_prompt "expressions: prompts: '{' at offset 0 is never closed" \
    $BIN sprite mira --scenario "$D" -m "$MODEL" --base a --outfits coat --expressions '{happy|sad'
expect_error model_missing "sprite: --model: $T/nomodel/model_index.json: cannot open" $BIN sprite mira --scenario "$D" -m "$T/nomodel" $SET
unchanged model_missing
expect_error no_base "give --base, --outfits and --expressions" $BIN sprite mira --scenario "$D" -m "$MODEL" --outfits a --expressions b
expect_error bad_color "--color 'red' is not green, white or auto" $BIN sprite mira --scenario "$D" -m "$MODEL" $SET --color red
expect_error bg_with_set "--background draws one picture" $BIN sprite --background pier --scenario "$D" -m "$MODEL" -p x --outfits a
expect_error bg_no_prompt "--background needs the picture's --prompt" $BIN sprite --background pier --scenario "$D" -m "$MODEL"
# edda has the outfits oilskin, guernsey, nightshawl for her body 'standing': a set for a new body would leave them without a layer.
expect_error new_body_orphans "character 'edda': the outfit 'oilskin' would have no layer for the new body 'default'" \
    $BIN sprite edda --body default --scenario "$D" -m "$MODEL" $SET
unchanged new_body_orphans
# A character with two bodies: a set for one of them cannot add variants (they would lack a layer for the other).
python3 - "$D/manifest.json" "$T/two.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t = [c for c in m['characters'] if c['id'] == 'tobin'][0]
t['bodies'].append({'id': 'sitting', 'image': t['bodies'][0]['image']})
for v in t['outfits'] + t['expressions']: v['layers']['sitting'] = v['layers'][t['bodies'][0]['id']]
json.dump(m, open(sys.argv[2], 'w'), indent=2)
PY
cp "$T/two.json" "$D/manifest.json"
expect_error new_variant_other_body "character 'tobin': the new expression 'grinning' would have no layer for the body 'sitting'" \
    $BIN sprite tobin --scenario "$D" -m "$MODEL" --base a --outfits workshirt --expressions grinning
cmp -s "$D/manifest.json" "$T/two.json" && ok new_variant_other_body_unchanged || bad new_variant_other_body_unchanged
cp "$T/orig.json" "$D/manifest.json"
sed 's/"id": "edda"/"id": "Edda"/' "$T/orig.json" >"$D/manifest.json"
expect_error invalid_pack "problems, the first: characters\[0\].id" $BIN sprite mira --scenario "$D" -m "$MODEL" $SET
cp "$T/orig.json" "$D/manifest.json"

# --- dry run: the plan, nothing written ---------------------------------------------------------
$BIN sprite mira --scenario "$D" -m "$T/nomodel" --base "a girl" --outfits '{casual|long coat}' --expressions '{happy|sad|happy}' \
    --seed 7 --dry-run >"$T/plan" 2>"$T/err"; rc=$?
if [ $rc -eq 0 ] && [ "$(wc -l <"$T/plan")" -eq 6 ] &&
   grep -q "^body  *default  *$D/sprites/mira/default.png  seed 7  \"a girl, plain green background\"" "$T/plan" &&
   grep -q "^outfit  *long-coat  *$D/sprites/mira/default.outfit.long-coat.png  seed 7  \"a girl, long coat, plain green background\"" "$T/plan" &&
   grep -q "^expression  *happy-2  *$D/sprites/mira/default.expression.happy-2.png  seed 7  \"a girl, happy, plain green background\"  (inpainted on the body's head)$" "$T/plan" &&
   [ ! -e "$D/sprites/mira" ]; then
    ok dry_run; else bad dry_run "exit $rc: $(cat "$T/plan" "$T/err")"; fi
unchanged dry_run

# --- generation -------------------------------------------------------------------------------------
if [ ! -f "$MODEL/model_index.json" ]; then
    skip generation "$MODEL not found (set SIM_SHARED)"
elif ! command -v python3 >/dev/null; then
    skip generation "python3 not found"
else
cat >"$T/png.py" <<'PY'
# png.py FILE: prints "w h colortype" and, for RGBA, the box of the opaque pixels "x y w h".
import struct, sys, zlib
def paeth(a, b, c):
    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)
def read(path):
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, idat = 8, b''
    while pos < len(data):
        n, t = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]
        if t == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
        if t == b'IDAT': idat += body
        pos += 12 + n
    bpp = {2: 3, 6: 4}[ctype]
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytes(w * bpp)
    for y in range(h):
        f, r = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = r[i - bpp] if i >= bpp else 0; b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
            r[i] = (r[i] + [0, a, b, (a + b) // 2, paeth(a, b, c)][f]) & 255
        rows.append(bytes(r)); prev = r
    return w, h, ctype, rows
if __name__ == '__main__':
    w, h, ctype, rows = read(sys.argv[1])
    out = [w, h, ctype]
    if ctype == 6:
        pts = [(x, y) for y in range(h) for x in range(w) if rows[y][x * 4 + 3]]
        x0, y0 = min(p[0] for p in pts), min(p[1] for p in pts)
        out += [x0, y0, max(p[0] for p in pts) - x0 + 1, max(p[1] for p in pts) - y0 + 1, w * h - len(pts)]
    print(*out)
PY
GEN="--scenario $D -m $MODEL --base girl --outfits {casual|long-coat} --expressions {happy|sad} -W 64 -H 96 --steps 2 --seed 3 --tolerance 100 --softness 20 --head 0.3"
$BIN sprite mira $GEN --sheet "$T/sheet.png" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] && grep -q "character 'mira', body 'default': 2 outfits, 2 expressions" "$T/out" && ok set_generated ||
    bad set_generated "exit $rc: $(cat "$T/out" "$T/err")"
[ "$(grep -c '^sprite: \[[1-5]/5\]' "$T/err")" -eq 5 ] && grep -q "\[4/5\] expression 'happy'" "$T/err" && ok set_progress ||
    bad set_progress "$(cat "$T/err")"
$BIN check "$D" >"$T/check" 2>&1 && ok set_check || bad set_check "$(cat "$T/check")"
ls "$D/sprites/mira" >"$T/files"
[ "$(cat "$T/files" | tr '\n' ' ')" = "default.expression.happy.png default.expression.sad.png default.outfit.casual.png default.outfit.long-coat.png default.png " ] &&
    ok set_files || bad set_files "$(cat "$T/files")"
# The manifest: ids, paths, sha256s, placements; the canvas and the head box from the pixels.
python3 - "$D" "$T/png.py" >"$T/py" 2>&1 <<'PY'
import hashlib, json, sys, importlib.util
d = sys.argv[1]
spec = importlib.util.spec_from_file_location('png', sys.argv[2]); png = importlib.util.module_from_spec(spec); spec.loader.exec_module(png)
m = json.load(open(d + '/manifest.json'))
c = [c for c in m['characters'] if c['id'] == 'mira']
assert len(c) == 1, 'one mira'
c = c[0]
assert [c['id'] for c in m['characters']] == ['edda', 'tobin', 'nell', 'mira'], [c['id'] for c in m['characters']]
assert c['name'] == {'en-US': 'Mira'} and c['appearance'] == {'en-US': 'girl'}
def sha(p): return hashlib.sha256(open(d + '/' + p, 'rb').read()).hexdigest()
assert [b['id'] for b in c['bodies']] == ['default']
body = c['bodies'][0]['image']
assert body['path'] == 'sprites/mira/default.png' and body['sha256'] == sha(body['path'])
w, h, ct, rows = png.read(d + '/' + body['path'])
assert ct == 6 and w <= 64 + 8 and h <= 96 + 8, (w, h, ct)
pts = [(x, y) for y in range(h) for x in range(w) if rows[y][x * 4 + 3]]
assert 0 < len(pts) < w * h, 'keyed: some pixels transparent, some not'
x0, y0 = min(p[0] for p in pts), min(p[1] for p in pts)
x1, y1 = max(p[0] for p in pts), max(p[1] for p in pts)
head_h = max(1, round((y1 - y0 + 1) * 0.3))
assert [o['id'] for o in c['outfits']] == ['casual', 'long-coat'] and [e['id'] for e in c['expressions']] == ['happy', 'sad']
for o in c['outfits']:
    L = o['layers']['default']
    assert L['path'] == 'sprites/mira/default.outfit.%s.png' % o['id'] and L['sha256'] == sha(L['path']), o
    assert (L['x'], L['y'], L['scale']) == (0, 0, 1) and o['name'] == {'en-US': o['id']}
    ow, oh, oct_, _ = png.read(d + '/' + L['path'])
    assert (ow, oh, oct_) == (w, h, 6), 'outfits share the canvas'
for e in c['expressions']:
    L = e['layers']['default']
    assert L['path'] == 'sprites/mira/default.expression.%s.png' % e['id'] and L['sha256'] == sha(L['path']), e
    ew, eh, ect, _ = png.read(d + '/' + L['path'])
    assert (ew, eh, ect) == (x1 - x0 + 1, head_h, 6), ('the head box', ew, eh, x1 - x0 + 1, head_h)
    assert abs(L['x'] - x0 / w) < 1e-12 and abs(L['y'] - y0 / h) < 1e-12 and L['scale'] == 1, (L, x0 / w, y0 / h)
sw, sh, sct, _ = png.read(sys.argv[1] + '/../sheet.png')
# labels: the row band is 4 + width("long-coat") (9 * 6 - 1) + 4 wide, the column band 4 + 7 + 4 high
assert (sw, sh, sct) == (61 + 4 + 2 * (w + 4), 15 + 4 + 2 * (h + 4), 6), (sw, sh, w, h)
print('ok', w, h, x0, y0, x1 - x0 + 1, head_h)
PY
grep -q "^ok" "$T/py" && ok set_manifest_pixels_sheet || bad set_manifest_pixels_sheet "$(tail -5 "$T/py")"

# A re-run with the same seed writes the same files: the manifest stays byte-identical, no file added.
cp "$D/manifest.json" "$T/run1.json"
$BIN sprite mira $GEN >/dev/null 2>"$T/err" && cmp -s "$D/manifest.json" "$T/run1.json" &&
    [ "$(ls "$D/sprites/mira" | wc -l)" -eq 5 ] && [ -z "$(find "$D" -name '*.tmp')" ] && ok rerun_idempotent ||
    bad rerun_idempotent "$(cat "$T/err"; diff "$T/run1.json" "$D/manifest.json" | head)"
# Another seed replaces the same ids: new sha256s, same ids and paths, no duplicates.
$BIN sprite mira $GEN --seed 4 >/dev/null 2>&1 && $BIN check "$D" >/dev/null 2>&1 &&
python3 - "$D" "$T/run1.json" <<'PY' && ok rerun_replaces || bad rerun_replaces
import json, sys
a = [c for c in json.load(open(sys.argv[1] + '/manifest.json'))['characters'] if c['id'] == 'mira']
b = [c for c in json.load(open(sys.argv[2]))['characters'] if c['id'] == 'mira'][0]
assert len(a) == 1; a = a[0]
assert [o['id'] for o in a['outfits']] == ['casual', 'long-coat'] and [e['id'] for e in a['expressions']] == ['happy', 'sad']
assert a['bodies'][0]['image']['path'] == b['bodies'][0]['image']['path'] and a['bodies'][0]['image']['sha256'] != b['bodies'][0]['image']['sha256']
PY
# Errors after a valid run leave it as it is.
cp "$D/manifest.json" "$T/orig.json"
expect_error sheet_no_folder "sprite: --sheet $T/nodir/s.png: no folder $T/nodir\$" $BIN sprite mira $GEN --sheet "$T/nodir/s.png"
unchanged sheet_no_folder
# A sheet that cannot be written (a folder of that name) fails after the generation, before any file of the pack is written.
mkdir "$T/s.png"
$BIN sprite mira $GEN --steps 1 --sheet "$T/s.png" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && [ ! -s "$T/out" ] && tail -n 1 "$T/err" | grep -q "^simularity: sprite: --sheet: $T/s.png: " && ok sheet_unwritable ||
    bad sheet_unwritable "exit $rc: $(cat "$T/err")"
unchanged sheet_unwritable
expect_error key_fails "body 'default': key: no flat background" $BIN sprite mira $GEN --steps 1 --tolerance 5
unchanged key_fails

# An existing character: edda's expression 'happy' gets a new layer (its name kept), 'excited' is added,
# the variants not in the set keep theirs (noted), the episodes that use them still check.
$BIN sprite edda --scenario "$D" -m "$MODEL" --base "an old woman" --outfits guernsey --expressions '{happy|excited}' -W 64 -H 96 \
    --steps 1 --tolerance 100 --softness 20 >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 0 ] && $BIN check "$D" >/dev/null 2>&1 && grep -q "note: the outfit 'oilskin' keeps its layer for the body 'standing'" "$T/err" &&
python3 - "$D" <<'PY'; then ok existing_character; else bad existing_character "exit $rc: $(cat "$T/err")"; fi
import json, sys
e = [c for c in json.load(open(sys.argv[1] + '/manifest.json'))['characters'] if c['id'] == 'edda'][0]
assert [b['id'] for b in e['bodies']] == ['standing'] and e['bodies'][0]['image']['path'] == 'sprites/edda/standing.png'
x = {v['id']: v for v in e['expressions']}
assert list(x)[:1] == ['neutral'] and list(x)[-1] == 'excited' and len(x) == 6, list(x)
assert x['happy']['name'] == {'en-US': 'Happy'} and x['happy']['layers']['standing']['path'] == 'sprites/edda/standing.expression.happy.png'
assert x['neutral']['layers']['standing']['path'] == 'sprites/edda/face-neutral.svg'
assert x['excited']['name'] == {'en-US': 'excited'}
PY

# Expressions are inpainted on the body's head (the parameters say so); --no-inpaint draws them from text.
grep -aq "Denoising strength: 0.75, Inpainted: the body's head" "$D/sprites/mira/default.expression.happy.png" &&
    ! grep -aq "Denoising" "$D/sprites/mira/default.outfit.casual.png" && ok expressions_inpainted || bad expressions_inpainted
cp "$D/sprites/mira/default.expression.sad.png" "$T/sad_inpainted.png"
$BIN sprite mira $GEN --no-inpaint >/dev/null 2>&1 && $BIN check "$D" >/dev/null 2>&1 &&
    ! grep -aq "Denoising" "$D/sprites/mira/default.expression.sad.png" && ! cmp -s "$D/sprites/mira/default.expression.sad.png" "$T/sad_inpainted.png" &&
    ok no_inpaint || bad no_inpaint
expect_error bad_strength "--strength must be in (0, 1]" $BIN sprite mira $GEN --strength 0

# --- backgrounds ----------------------------------------------------------------------------------------
$BIN sprite --background harbour-dusk --scenario "$D" -m "$MODEL" -p "a harbour at dusk" -W 96 -H 64 --steps 1 >"$T/out" 2>"$T/err"; rc=$?
r=$(python3 "$T/png.py" "$D/backgrounds/harbour-dusk.png" 2>&1)
[ $rc -eq 0 ] && [ "$r" = "96 64 2" ] && $BIN check "$D" >/dev/null 2>&1 &&
    grep -q "\"path\": \"backgrounds/harbour-dusk.png\"" "$D/manifest.json" && ok background_replaced || bad background_replaced "exit $rc: $r $(cat "$T/err")"
$BIN sprite --background cove --scenario "$D" -m "$MODEL" -p "a cove" -W 64 -H 64 --steps 1 >/dev/null 2>&1 && $BIN check "$D" >/dev/null 2>&1 &&
python3 - "$D" <<'PY' && ok background_new_scene || bad background_new_scene
import hashlib, json, sys
s = [s for s in json.load(open(sys.argv[1] + '/manifest.json'))['scenes'] if s['id'] == 'cove'][0]
assert s['name'] == {'en-US': 'Cove'} and s['prompt'] == {'en-US': 'a cove'}
assert s['background']['sha256'] == hashlib.sha256(open(sys.argv[1] + '/backgrounds/cove.png', 'rb').read()).hexdigest()
PY
fi

echo "test_sprite.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

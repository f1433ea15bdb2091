#!/bin/sh
# CLI tests for the image tools: `simularity image key` (chroma key),
# `simularity image prompts` (dynamic prompts) and `simularity image gen`
# (on micro-sd15: golden latent and image, seeds, tiny autoencoder,
# previews, img2img, inpainting, variations). Input PNGs are written and outputs read back by Python
# (zlib + struct), independently of our codec.
# Usage: sh tests/cli/test_image_tools.sh   (SIM_BIN: the binary, default ./simularity)
. tests/cli/harness.inc

# --- the image command --------------------------------------------------------------------
$BIN --help | grep -q "^  image" && ok image_listed || bad image_listed
$BIN image --help >"$T/out" 2>&1 && grep -q "key" "$T/out" && grep -q "prompts" "$T/out" && ok image_help || bad image_help
$BIN image >/dev/null 2>&1; [ $? -eq 1 ] && ok image_no_sub || bad image_no_sub
expect_error image_unknown "unknown subcommand 'bogus'" $BIN image bogus

# --- prompts ---------------------------------------------------------------------------------
out=$($BIN image prompts 'a {red|blue} {cat|dog}' 2>"$T/err")
[ "$out" = "$(printf 'a red cat\na red dog\na blue cat\na blue dog')" ] && ok prompts_order || bad prompts_order "$out"
out=$($BIN image prompts '{2$$x|y|z}, \{lit\}')
[ "$out" = "$(printf 'x, y, {lit}\nx, z, {lit}\ny, z, {lit}')" ] && ok prompts_pick_escape || bad prompts_pick_escape "$out"
a=$($BIN image prompts '{a|b|c|d} {1|2|3}' --random 20 --seed 9)
b=$($BIN image prompts '{a|b|c|d} {1|2|3}' --random 20 --seed 9)
c=$($BIN image prompts '{a|b|c|d} {1|2|3}' --random 20 --seed 10)
[ "$a" = "$b" ] && [ "$a" != "$c" ] && [ "$(echo "$a" | wc -l)" -eq 20 ] && ok prompts_random_seed || bad prompts_random_seed "$a"
expect_error prompts_unclosed "'{' at offset 2 is never closed" $BIN image prompts 'a {b|c'
expect_error prompts_unbalanced "unbalanced '}' at offset 1" $BIN image prompts 'a}'
expect_error prompts_too_many "1048576 expansions (at most 100000" $BIN image prompts \
    '{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}'
n=$($BIN image prompts '{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}{a|b|c|d}' --random 7 | wc -l)
[ "$n" -eq 7 ] && ok prompts_random_large || bad prompts_random_large "$n lines"
expect_error prompts_no_text "give the prompt text" $BIN image prompts

# --- key -------------------------------------------------------------------------------------
if ! command -v python3 >/dev/null; then
    skip key "python3 not found"
else
python3 - "$T" <<'PY'
import struct, sys, zlib
d = sys.argv[1]
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
def png(path, w, h, px, text=b''):
    raw = b''.join(b'\0' + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
        (chunk(b'tEXt', text) if text else b'') + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
def disc(w, h, cx, cy, r, fg, bg):
    px = []
    for y in range(h):
        for x in range(w):
            n = sum((x + (i + .5) / 4 - cx) ** 2 + (y + (j + .5) / 4 - cy) ** 2 <= r * r for i in range(4) for j in range(4))
            a = n / 16
            px += [round(a * f + (1 - a) * b) for f, b in zip(fg, bg)]
    return px
png(d + '/green.png', 64, 48, disc(64, 48, 32, 30, 12, (220, 120, 60), (0, 255, 0)), b'parameters\0a fox, seed 7')
png(d + '/white.png', 40, 40, disc(40, 40, 20, 20, 10, (30, 40, 160), (255, 255, 255)))
png(d + '/flat.png', 8, 8, [0, 255, 0] * 64)
png(d + '/noise.png', 16, 16, [(i * 97 + (i >> 3) * 31) & 255 for i in range(16 * 16 * 3)])
PY
cat >"$T/read.py" <<'PY'
import struct, sys, zlib
def paeth(a, b, c):
    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n'
pos, idat, texts = 8, b'', {}
while pos < len(data):
    n, t = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]
    assert zlib.crc32(t + body) & 0xffffffff == struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])[0]
    if t == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
    if t == b'IDAT': idat += body
    if t == b'tEXt': k, v = body.split(b'\0', 1); texts[k.decode()] = v.decode()
    pos += 12 + n
assert depth == 8 and ctype == 6
raw, stride, rows, prev = zlib.decompress(idat), w * 4, [], bytes(w * 4)
for y in range(h):
    f, r = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = r[i - 4] if i >= 4 else 0; b = prev[i]; c = prev[i - 4] if i >= 4 else 0
        r[i] = (r[i] + [0, a, b, (a + b) // 2, paeth(a, b, c)][f]) & 255
    rows.append(bytes(r)); prev = r
px = lambda x, y: rows[y][x * 4:x * 4 + 4]
corners = [px(0, 0)[3], px(w - 1, 0)[3], px(0, h - 1)[3], px(w - 1, h - 1)[3]]
cast = sum(1 for y in range(h) for x in range(w) if px(x, y)[3] and px(x, y)[1] > max(px(x, y)[0], px(x, y)[2]) + 2)
print(w, h, max(corners), px(w // 2, h // 2)[3], cast, texts.get('parameters', '-'))
PY
$BIN image key "$T/green.png" "$T/green_out.png" 2>"$T/err"; rc=$?
r=$(python3 "$T/read.py" "$T/green_out.png" 2>&1)
# the disc spans 24 px, plus a 4 px margin on each side: 32x32 (±1)
set -- $r
if [ $rc -eq 0 ] && [ "$1" -ge 31 ] && [ "$1" -le 33 ] && [ "$2" -ge 31 ] && [ "$2" -le 33 ] && [ "$3" -eq 0 ] && [ "$4" -eq 255 ] && [ "$5" -eq 0 ]; then
    ok key_green_trim_alpha_spill; else bad key_green_trim_alpha_spill "exit $rc: $r $(cat "$T/err")"; fi
grep -q "background #00FF00" "$T/err" && ok key_green_detected || bad key_green_detected "$(cat "$T/err")"
echo "$r" | grep -q "a fox, seed 7" && ok key_keeps_text || bad key_keeps_text "$r"
$BIN image key "$T/white.png" "$T/white_out.png" --color '#FFFFFF' --no-trim 2>"$T/err"; rc=$?
r=$(python3 "$T/read.py" "$T/white_out.png" 2>&1); set -- $r
[ $rc -eq 0 ] && [ "$1" -eq 40 ] && [ "$2" -eq 40 ] && [ "$3" -eq 0 ] && [ "$4" -eq 255 ] && ok key_white_no_trim || bad key_white_no_trim "exit $rc: $r"
$BIN image key "$T/green.png" "$T/g2.png" --tolerance 20 --softness 30 --margin 0 2>/dev/null &&
    [ "$(python3 "$T/read.py" "$T/g2.png" | cut -d' ' -f1)" -le 25 ] && ok key_options || bad key_options
expect_error key_missing "$T/none.png: cannot open" $BIN image key "$T/none.png" "$T/o.png"
printf 'not a png at all' >"$T/text.png"
expect_error key_not_png "$T/text.png: png: not a PNG file" $BIN image key "$T/text.png" "$T/o.png"
head -c 60 "$T/green.png" >"$T/trunc.png"
expect_error key_truncated "$T/trunc.png: png: " $BIN image key "$T/trunc.png" "$T/o.png"
expect_error key_bad_color "--color 'green' is not auto or #RRGGBB" $BIN image key "$T/green.png" "$T/o.png" --color green
expect_error key_all_background "every pixel is background" $BIN image key "$T/flat.png" "$T/o.png"
expect_error key_no_flat "no flat background" $BIN image key "$T/noise.png" "$T/o.png"
expect_error key_one_arg "give the input and the output" $BIN image key "$T/green.png"
fi

# --- image gen (micro-sd15 from ../shared) ------------------------------------------------------
G="$SHARED/diffusion/micro-sd15"
expect_error gen_no_model "give the model folder" $BIN image gen -p x
expect_error gen_bad_sampler "sampler 'heun' is unknown" $BIN image gen -m "$T" -p x --sampler heun
expect_error gen_bad_timesteps "descending integers" $BIN image gen -m "$T" -p x --timesteps 10,20
expect_error gen_no_folder "model_index.json" $BIN image gen -m "$T/none" -p x
if [ ! -f "$G/model_index.json" ]; then
    skip image_gen "$G is absent"
else
    P="1girl, cat ears, happy, bright green background, 3/4 body sprite"
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --cfg 7.5 --timesteps 999,749,499,249 --init-latent "$G/unet.in.latent.f32" \
        --save-latent "$T/lat.f32" -o "$T/gen.png" -t 2 >"$T/out" 2>"$T/err" && ok gen_runs || bad gen_runs "$(tail -c 300 "$T/err")"
    python3 - "$T" "$G" <<'PY' && ok gen_matches_golden || bad gen_matches_golden "$(cat "$T/py.err" 2>/dev/null)"
import struct, sys, zlib
t, g = sys.argv[1], sys.argv[2]
lat = struct.unpack('256f', open(t + '/lat.f32', 'rb').read())
ref = struct.unpack('256f', open(g + '/pipeline.final_latent.f32', 'rb').read())
assert max(abs(a - b) for a, b in zip(lat, ref)) <= 1e-3 * max(abs(b) for b in ref)
# The PNG: parameters in a tEXt chunk, pixels = the golden image quantized.
d = open(t + '/gen.png', 'rb').read()
pos, idat, text = 8, b'', {}
while pos < len(d):
    n, kind = struct.unpack('>I4s', d[pos:pos + 8])
    body = d[pos + 8:pos + 8 + n]
    if kind == b'IDAT': idat += body
    if kind == b'tEXt': k, v = body.split(b'\0', 1); text[k.decode()] = v.decode('latin-1')
    pos += 12 + n
assert 'Steps: 4, Sampler: ddim, CFG scale: 7.5, Seed: 0, Size: 16x16' in text['parameters'], text
raw, rows, prev = zlib.decompress(idat), [], bytearray(48)
for y in range(16):
    f, line = raw[y * 49], bytearray(raw[y * 49 + 1:(y + 1) * 49])
    for i in range(48):
        a = line[i - 3] if i >= 3 else 0; b = prev[i]; c = prev[i - 3] if i >= 3 else 0
        p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = [0, a, b, (a + b) // 2, a if pa <= pb and pa <= pc else b if pb <= pc else c][f]
        line[i] = (line[i] + pred) & 255
    rows.append(line); prev = line
img = struct.unpack('768f', open(g + '/pipeline.image.f32', 'rb').read())
worst = max(abs(rows[y][x * 3 + ch] - min(255, max(0, (img[ch * 256 + y * 16 + x] + 1) * 127.5)))
            for y in range(16) for x in range(16) for ch in range(3))
assert worst <= 1.0, worst
PY
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 3 --sampler euler_a --seed 5 --batch 2 -o "$T/b.png" -t 2 >"$T/out" 2>&1
    [ -f "$T/b-1.png" ] && [ -f "$T/b-2.png" ] && ! cmp -s "$T/b-1.png" "$T/b-2.png" && grep -q "b-2.png" "$T/out" &&
        ok gen_batch_seeds || bad gen_batch_seeds "$(cat "$T/out" | tail -c 300)"
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 3 --sampler euler_a --seed 5 -o "$T/b1.png" -t 2 >/dev/null 2>&1
    cmp -s "$T/b1.png" "$T/b-1.png" && ok gen_seed_reproduces || bad gen_seed_reproduces
    expect_error gen_init_size "has 1024 bytes; 32x32 needs 4096" $BIN image gen -m "$G" -p x -W 32 -H 32 --init-latent "$G/unet.in.latent.f32"
    # PNG pixels (RGB, 8 bits) and the parameters text, by Python.
    cat >"$T/rgb.py" <<'PY'
import hashlib, struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
pos, idat, text = 8, b'', {}
while pos < len(d):
    n, kind = struct.unpack('>I4s', d[pos:pos + 8]); body = d[pos + 8:pos + 8 + n]
    if kind == b'IHDR': w, h = struct.unpack('>II', body[:8])
    if kind == b'IDAT': idat += body
    if kind == b'tEXt': k, v = body.split(b'\0', 1); text[k.decode()] = v.decode('latin-1')
    pos += 12 + n
raw, rows, prev, s = zlib.decompress(idat), [], bytearray(w * 3), w * 3
for y in range(h):
    f, line = raw[y * (s + 1)], bytearray(raw[y * (s + 1) + 1:(y + 1) * (s + 1)])
    for i in range(s):
        a = line[i - 3] if i >= 3 else 0; b = prev[i]; c = prev[i - 3] if i >= 3 else 0
        p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        line[i] = (line[i] + [0, a, b, (a + b) // 2, a if pa <= pb and pa <= pc else b if pb <= pc else c][f]) & 255
    rows.append(bytes(line)); prev = line
print(w, h, hashlib.sha1(b''.join(rows)).hexdigest()[:16], text.get('parameters', '-').replace('\n', ' | '))
PY
    MKSD=$(dirname "$BIN")/tools/mksd
    if [ ! -x "$MKSD" ]; then
        skip gen_taesd "$MKSD is absent (make its tools)"
    else
        "$MKSD" --taesd --out "$T/taesd" --dtype f32 --seed 5 >/dev/null
        # DDIM's last step lands on its x0, so the last preview is the final image.
        $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 3 --taesd "$T/taesd" --vae taesd --preview 1 -o "$T/tiny.png" -t 2 \
            >/dev/null 2>"$T/err" || bad gen_taesd "$(tail -c 300 "$T/err")"
        a=$(python3 "$T/rgb.py" "$T/tiny.png"); b=$(python3 "$T/rgb.py" "$T/tiny.preview.png")
        [ "$(echo "$a" | cut -d' ' -f1-3)" = "$(echo "$b" | cut -d' ' -f1-3)" ] && echo "$a" | grep -q "VAE: taesd, Engine" &&
            ok gen_taesd_preview_is_final || bad gen_taesd_preview_is_final "$a / $b"
        expect_error gen_taesd_missing "--taesd: tiny autoencoder: $T: no tiny autoencoder" \
            $BIN image gen -m "$G" -p x -W 16 -H 16 --taesd "$T" --vae taesd
    fi
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 3 --preview 2 -o "$T/lin.png" -t 2 >/dev/null 2>&1
    r=$(python3 "$T/rgb.py" "$T/lin.preview.png" 2>&1)
    [ "$(echo "$r" | cut -d' ' -f1-2)" = "16 16" ] && ok gen_preview_linear || bad gen_preview_linear "$r"
    # Dynamic prompts: an image per expansion, in order, all with the one seed (or seed + k with --vary-seed).
    $BIN image gen -m "$G" -p "{red|blue} fox" -W 16 -H 16 --steps 2 --seed 5 -o "$T/d.png" -t 2 >/dev/null 2>"$T/err"
    $BIN image gen -m "$G" -p "blue fox" -W 16 -H 16 --steps 2 --seed 5 -o "$T/blue.png" -t 2 >/dev/null 2>&1
    a=$(python3 "$T/rgb.py" "$T/d-1.png" 2>&1); b=$(python3 "$T/rgb.py" "$T/d-2.png" 2>&1)
    echo "$a" | grep -q "^16 16 [0-9a-f]* red fox | .*Seed: 5," && echo "$b" | grep -q "^16 16 [0-9a-f]* blue fox | .*Seed: 5," &&
        cmp -s "$T/d-2.png" "$T/blue.png" && [ ! -f "$T/d-3.png" ] && ok gen_dynamic_prompts || bad gen_dynamic_prompts "$a / $b / $(tail -c 200 "$T/err")"
    $BIN image gen -m "$G" -p "{red|blue} fox" -W 16 -H 16 --steps 2 --seed 5 --vary-seed --batch 2 -o "$T/v.png" -t 2 >/dev/null 2>&1
    r=$(for i in 1 2 3 4; do python3 "$T/rgb.py" "$T/v-$i.png" | sed 's/.*Seed: \([0-9]*\),.*/\1/'; done | tr '\n' ' ')
    [ "$r" = "5 6 7 8 " ] && ok gen_vary_seed || bad gen_vary_seed "$r"
    $BIN image gen -m "$G" -p "{a|b|c|d|e|f|g|h|i} {a|b|c|d|e|f|g|h|i} fox" -W 16 -H 16 --steps 1 --random 3 --seed 2 -o "$T/r.png" -t 2 >/dev/null 2>&1
    [ -f "$T/r-3.png" ] && [ ! -f "$T/r-4.png" ] && ok gen_random_prompts || bad gen_random_prompts
    expect_error gen_too_many_expansions "(use --random N)" $BIN image gen -m "$G" -p "{a|b|c|d|e|f|g|h|i} {a|b|c|d|e|f|g|h|i}" -W 16 -H 16 -o "$T/x.png"
    expect_error gen_bad_dynamic_prompt "image gen: -p:" $BIN image gen -m "$G" -p "{a|b" -W 16 -H 16 -o "$T/x.png"
    # img2img and inpainting from a 40x24 picture, cropped to its centre 24x24 (the mask's edge lands on pixel 8).
    python3 - "$T" <<'PY'
import struct, sys, zlib
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
def png(path, w, h, px):
    raw = b''.join(b'\0' + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
        chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
png(sys.argv[1] + '/init.png', 40, 24, [(x * 7 + y * 3 + c * 50) & 255 for y in range(24) for x in range(40) for c in range(3)])
png(sys.argv[1] + '/mask.png', 40, 24, [255 if x < 20 else 0 for y in range(24) for x in range(40) for c in range(3)])
PY
    I="--init $T/init.png"
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 4 $I --strength 0.5 -o "$T/i2i.png" -t 2 >/dev/null 2>"$T/err"
    r=$(python3 "$T/rgb.py" "$T/i2i.png" 2>&1)
    grep -q "step 2/2" "$T/err" && ! grep -q "step 3/" "$T/err" && echo "$r" | grep -q "Denoising strength: 0.5, Resize mode: crop" &&
        ok gen_img2img_steps || bad gen_img2img_steps "$r $(tail -c 200 "$T/err")"
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 3 --seed 4 $I --strength 1 -o "$T/s1.png" -t 2 >/dev/null 2>&1
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 3 --seed 4 -o "$T/t2i.png" -t 2 >/dev/null 2>&1
    [ "$(python3 "$T/rgb.py" "$T/s1.png" | cut -d' ' -f3)" = "$(python3 "$T/rgb.py" "$T/t2i.png" | cut -d' ' -f3)" ] &&
        ok gen_strength1_is_txt2img || bad gen_strength1_is_txt2img
    # Inpainting: the kept (right) half of the latent is the init latent (strength 0's) byte for byte, the left half is not.
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 4 $I --strength 0 --save-latent "$T/l0.f32" -o "$T/s0.png" -t 2 >/dev/null 2>&1
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 4 $I --mask "$T/mask.png" --mask-blur 0 --save-latent "$T/lm.f32" \
        -o "$T/inp.png" -t 2 >/dev/null 2>"$T/err"
    python3 - "$T" <<'PY' && ok gen_inpaint_keeps || bad gen_inpaint_keeps "$(tail -c 300 "$T/err")"
import struct, sys
t = sys.argv[1]
a = struct.unpack('256f', open(t + '/l0.f32', 'rb').read()); b = struct.unpack('256f', open(t + '/lm.f32', 'rb').read())
kept = sum(a[i] == b[i] for i in range(256) if i % 8 >= 4); changed = sum(a[i] != b[i] for i in range(256) if i % 8 < 4)
assert kept == 128 and changed == 128, (kept, changed)
PY
    python3 "$T/rgb.py" "$T/inp.png" >"$T/out.txt" 2>&1
    grep -q "Mask blur: 0" "$T/out.txt" && ok gen_inpaint_params || bad gen_inpaint_params "$(cat "$T/out.txt")"
    # Interpolation: the ends are the two seeds' images (DDIM adds no other noise).
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 2 --seed 1 --subseed 2 --interpolate 3 -o "$T/v.png" -t 2 >/dev/null 2>&1
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 2 --seed 2 -o "$T/seed2.png" -t 2 >/dev/null 2>&1
    $BIN image gen -m "$G" -p "$P" -W 16 -H 16 --steps 2 --seed 1 -o "$T/seed1.png" -t 2 >/dev/null 2>&1
    h() { python3 "$T/rgb.py" "$1" | cut -d' ' -f3; }
    [ "$(h "$T/v-1.png")" = "$(h "$T/seed1.png")" ] && [ "$(h "$T/v-3.png")" = "$(h "$T/seed2.png")" ] &&
        [ "$(h "$T/v-2.png")" != "$(h "$T/seed1.png")" ] && python3 "$T/rgb.py" "$T/v-2.png" | grep -q "Variation seed: 2, Variation seed strength: 0.5" &&
        ok gen_interpolate || bad gen_interpolate "$(python3 "$T/rgb.py" "$T/v-2.png")"
    expect_error gen_init_missing "--init: $T/none.png: cannot open" $BIN image gen -m "$G" -p x -W 16 -H 16 --init "$T/none.png"
fi
expect_error gen_bad_resize "--resize 'squash' is not crop, just or fill" $BIN image gen -m "$T" -p x --resize squash
expect_error gen_mask_no_init "--mask needs the image to inpaint" $BIN image gen -m "$T" -p x --mask "$T/m.png"
expect_error gen_bad_strength "--strength must be 0..1" $BIN image gen -m "$T" -p x --strength 2
expect_error gen_interpolate_batch "--interpolate and --batch exclude each other" $BIN image gen -m "$T" -p x --interpolate 3 --batch 2
expect_error gen_bad_vae "--vae 'tiny' is not full or taesd" $BIN image gen -m "$T" -p x --vae tiny
expect_error gen_taesd_needs_path "--vae taesd needs the decoder's weights" $BIN image gen -m "$T" -p x --vae taesd

echo "test_image_tools: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

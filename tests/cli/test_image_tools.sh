#!/bin/sh
# CLI tests for the image tools: `simularity image key` (chroma key) and
# `simularity image prompts` (dynamic prompts). Input PNGs are written and
# outputs read back by Python (zlib + struct), independently of our codec.
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

echo "test_image_tools: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

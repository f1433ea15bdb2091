#!/usr/bin/env python3
"""Reference PNGs for tests/test_image_png.c, written independently of our
codec with only zlib and struct: every colour type, bit depths 1..16, every
filter type, palette + tRNS, Adam7, zTXt and iTXt (gray8). For each NAME.png it writes NAME.rgba,
the expected RGBA8 pixels (16-bit samples reduced as round(v * 255 / 65535),
1/2/4-bit gray scaled as v * 255 // (2^d - 1)).
Usage: python3 make_png.py OUTDIR"""
import os, random, struct, sys, zlib

out = sys.argv[1]
rng = random.Random(1234)

def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)

def paeth(a, b, c):
    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

def filt(f, row, prev, bpp):
    o = bytearray()
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i] if prev else 0
        c = prev[i - bpp] if prev and i >= bpp else 0
        p = [0, a, b, (a + b) // 2, paeth(a, b, c)][f]
        o.append((x - p) & 255)
    return bytes(o)

def pack_row(samples, depth):
    if depth == 16: return b''.join(struct.pack('>H', s) for s in samples)
    if depth == 8: return bytes(samples)
    bits = ''.join(format(s, '0%db' % depth) for s in samples)
    bits += '0' * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))

def scan(pixels, w, h, nch, depth, filters):
    """pixels: list of rows of sample lists; filters: function y -> type"""
    bpp = max(1, nch * depth // 8)
    raw, prev = b'', None
    for y in range(h):
        r = pack_row(pixels[y], depth)
        f = filters(y)
        raw += bytes([f]) + filt(f, r, prev, bpp)
        prev = r
    return raw

A7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]

def write(name, w, h, ctype, depth, pixels, expect, filters=lambda y: y % 5, interlace=0, extra=b''):
    nch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    if interlace:
        raw = b''
        for x0, y0, dx, dy in A7:
            xs, ys = list(range(x0, w, dx)), list(range(y0, h, dy))
            if not xs or not ys: continue
            sub = [[s for x in xs for s in pixels[y][x * nch:(x + 1) * nch]] for y in ys]
            raw += scan(sub, len(xs), len(ys), nch, depth, filters)
    else:
        raw = scan(pixels, w, h, nch, depth, filters)
    ihdr = struct.pack('>IIBBBBB', w, h, depth, ctype, 0, 0, interlace)
    z = zlib.compress(raw, 9)
    data = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + extra + chunk(b'tEXt', b'name\0' + name.encode())
    data += chunk(b'IDAT', z[:len(z) // 2]) + chunk(b'IDAT', z[len(z) // 2:]) + chunk(b'IEND', b'')
    open(os.path.join(out, name + '.png'), 'wb').write(data)
    open(os.path.join(out, name + '.rgba'), 'wb').write(bytes(expect))

def r16(v): return round(v * 255 / 65535)

def make(name, w, h, ctype, depth, **kw):
    nch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    maxv = (1 << depth) - 1
    npal = kw.pop('npal', 0)
    texts = kw.pop('texts', b'')
    trns = kw.pop('trns', None)
    pal = [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(npal)]
    palpha = [rng.randrange(256) for _ in range(npal // 2)]
    pixels = [[rng.randrange(npal if ctype == 3 else maxv + 1) for _ in range(w * nch)] for _ in range(h)]
    if trns is not None:  # make sure some pixels hit the key
        for y in range(0, h, 2): pixels[y][0:nch] = trns
    extra = b''
    if ctype == 3:
        extra = chunk(b'PLTE', bytes(c for p in pal for c in p)) + chunk(b'tRNS', bytes(palpha))
    elif trns is not None:
        extra = chunk(b'tRNS', b''.join(struct.pack('>H', v) for v in trns))
    conv = (lambda v: r16(v)) if depth == 16 else (lambda v: v * 255 // maxv)
    exp = []
    for y in range(h):
        for x in range(w):
            s = pixels[y][x * nch:(x + 1) * nch]
            if ctype == 3:
                i = s[0]; exp += list(pal[i]) + [palpha[i] if i < len(palpha) else 255]
            elif ctype == 0:
                g = conv(s[0]); exp += [g, g, g, 0 if trns is not None and s == trns else 255]
            elif ctype == 4:
                g = conv(s[0]); exp += [g, g, g, conv(s[1])]
            elif ctype == 2:
                exp += [conv(v) for v in s] + [0 if trns is not None and s == trns else 255]
            else:
                exp += [conv(v) for v in s]
    write(name, w, h, ctype, depth, pixels, exp, extra=extra + texts, **kw)

for f in range(5):
    make('rgb8_f%d' % f, 13, 7, 2, 8, filters=lambda y, f=f: f)
    make('gray16_f%d' % f, 9, 5, 0, 16, filters=lambda y, f=f: f)
make('gray1', 17, 5, 0, 1)
make('gray2', 11, 4, 0, 2)
make('gray4', 7, 6, 0, 4)
TEXTS = chunk(b'zTXt', b'ztext\0\0' + zlib.compress(b'compressed latin-1 text ' * 20)) + \
    chunk(b'iTXt', b'itext\0\1\0en\0Titel\0' + zlib.compress('caf\u00e9 \u2713 sprite'.encode())) + \
    chunk(b'iTXt', b'iplain\0\0\0\0\0' + 'plain \u00fc'.encode())
make('gray8', 10, 10, 0, 8, texts=TEXTS)
make('gray8_trns', 6, 6, 0, 8, trns=[77])
make('graya8', 9, 7, 4, 8)
make('graya16', 5, 8, 4, 16)
make('rgb16', 7, 3, 2, 16)
make('rgb8_trns', 8, 4, 2, 8, trns=[1, 2, 3])
make('rgba8', 11, 9, 6, 8)
make('rgba16', 6, 5, 6, 16)
make('pal8', 12, 7, 3, 8, npal=200)
make('pal4', 15, 3, 3, 4, npal=16)
make('pal2', 5, 9, 3, 2, npal=3)
make('pal1', 19, 2, 3, 1, npal=2)
make('rgba8_adam7', 21, 19, 6, 8, interlace=1)
make('pal2_adam7', 10, 13, 3, 2, npal=4, interlace=1)
make('gray16_adam7', 3, 2, 0, 16, interlace=1)
make('rgb8_adam7_1x1', 1, 1, 2, 8, interlace=1)

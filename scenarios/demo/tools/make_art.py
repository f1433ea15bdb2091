#!/usr/bin/env python3
"""Write the demo scenario's SVG art (backgrounds, sprites, thumbnail).

The art is hand-written SVG; this script only holds it in one place so the
three characters can share one skeleton and the layers stay lined up.
Python 3 standard library only. Re-run after editing, then run
update_hashes.py.

Sprite geometry (every character):
  body canvas     600 x 1200, drawn at its own size;
  outfit layer    600 x 1200 transparent overlay, x 0, y 0, scale 1;
  expression      400 x 400 face, x 1/3, y 130/1200, scale 0.5, so it covers
                  the 200 x 200 box at (200, 130) on the body: the head is an
                  ellipse centred at (300, 230), rx 88, ry 100.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def save(rel, text):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text.strip() + "\n")


def svg(w, h, body, defs=""):
    d = "<defs>%s</defs>" % defs if defs else ""
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
            'viewBox="0 0 %d %d">%s\n%s\n</svg>' % (w, h, w, h, d, body))


# ===================================================================== sprites

CHARS = {
    "edda": dict(skin="#f1c9a8", skin_dark="#d9a583", hair="#d9d6d0", hair_dark="#a9a49c",
                 eye="#4d7fa3", brow="#b8b2a8", lip="#b5655a", sw=108, ww=84, hw=92,
                 under="#e9e2d3", legs="#3b3a45", shoe="#3a2a20"),
    "tobin": dict(skin="#e0ab84", skin_dark="#c38a63", hair="#8a4b25", hair_dark="#5e3118",
                  eye="#5a7a3a", brow="#6b3a1c", lip="#b86a5a", sw=100, ww=72, hw=78,
                  under="#efe6d2", legs="#4b5466", shoe="#4a2e1c"),
    "nell": dict(skin="#a8704f", skin_dark="#8a5638", hair="#2a1d1a", hair_dark="#140d0b",
                 eye="#4a2e1e", brow="#2a1d1a", lip="#8e3b3b", sw=102, ww=70, hw=92,
                 under="#e8d9c4", legs="#4a3a3a", shoe="#2e1f1a"),
}


def arm_path(p, side):
    s = -1 if side == "l" else 1
    x0 = 300 + s * (p["sw"] - 14)
    x1 = 300 + s * (p["sw"] + 26)
    x2 = 300 + s * (p["sw"] + 6)
    return "M%d,400 Q%d,560 %d,712" % (x0, x1, x2)


def hand_xy(p, side):
    s = -1 if side == "l" else 1
    return 300 + s * (p["sw"] + 6), 742


def torso_path(p, bottom=770, extra=0):
    sw, ww, hw = p["sw"] + extra, p["ww"] + extra, p["hw"] + extra
    return ("M%d,400 Q%d,364 270,352 L330,352 Q%d,364 %d,400 "
            "L%d,640 L%d,%d L%d,%d L%d,640 Z" %
            (300 - sw, 300 - sw + 4, 300 + sw - 4, 300 + sw,
             300 + ww, 300 + hw, bottom, 300 - hw, bottom, 300 - ww))


def legs_svg(p, color, top=760, bottom=1138):
    hw = p["hw"]
    return ('<path d="M%d,%d L297,%d L291,%d L234,%d Z" fill="%s"/>'
            '<path d="M303,%d L%d,%d L366,%d L309,%d Z" fill="%s"/>' %
            (300 - hw, top, top, bottom, bottom, color,
             top, 300 + hw, top, bottom, bottom, color))


def hair_back(name, p):
    h, hd = p["hair"], p["hair_dark"]
    if name == "edda":  # silver hair in a bun
        return ('<circle cx="300" cy="120" r="52" fill="%s"/>'
                '<path d="M262,112 Q300,88 338,112" stroke="%s" stroke-width="5" fill="none"/>'
                '<ellipse cx="300" cy="218" rx="100" ry="100" fill="%s"/>' % (h, hd, h))
    if name == "tobin":  # short and messy
        return '<ellipse cx="300" cy="200" rx="96" ry="90" fill="%s"/>' % h
    # nell: big dark curls, tied with a scarf in the outfit-independent body
    curls = "".join('<circle cx="%d" cy="%d" r="%d" fill="%s"/>' % (x, y, r, h)
                    for x, y, r in ((225, 150, 52), (300, 120, 58), (375, 150, 52),
                                    (205, 215, 46), (395, 215, 46), (215, 280, 40),
                                    (385, 280, 40), (250, 110, 40), (350, 110, 40)))
    return curls


def hair_front(name, p):
    h, hd = p["hair"], p["hair_dark"]
    if name == "edda":
        return ('<path d="M212,205 Q215,128 300,124 Q385,128 388,205 Q360,150 300,148 '
                'Q240,150 212,205 Z" fill="%s"/>'
                '<path d="M300,128 Q270,140 250,165 M300,128 Q332,140 352,168" stroke="%s" '
                'stroke-width="4" fill="none" stroke-linecap="round"/>' % (h, hd))
    if name == "tobin":
        return ('<path d="M208,215 Q200,120 300,112 Q400,118 392,215 L378,178 L362,196 '
                'L350,166 L330,186 L312,160 L292,188 L272,160 L256,190 L240,166 L226,200 Z" '
                'fill="%s"/>'
                '<path d="M268,126 Q290,118 318,126" stroke="%s" stroke-width="4" fill="none" '
                'stroke-linecap="round"/>' % (h, hd))
    # nell: a red head scarf with a knot, curls peeking out
    return ('<path d="M206,200 Q210,118 300,110 Q390,118 394,200 Q372,160 300,156 '
            'Q228,160 206,200 Z" fill="#b8433f"/>'
            '<path d="M214,186 Q300,140 386,186" stroke="#e0a33a" stroke-width="6" '
            'fill="none" stroke-dasharray="4 10" stroke-linecap="round"/>'
            '<path d="M384,150 q34,-18 40,8 q-22,6 -40,-8 Z M384,150 q30,20 14,40 '
            'q-14,-14 -14,-40 Z" fill="#9c3532"/>'
            '<circle cx="384" cy="152" r="10" fill="#b8433f"/>'
            '<circle cx="212" cy="206" r="14" fill="%s"/><circle cx="388" cy="208" r="14" '
            'fill="%s"/>' % (h, h))


def face_marks(name, p):
    sd = p["skin_dark"]
    nose = ('<path d="M300,240 Q294,262 302,268" stroke="%s" stroke-width="4" fill="none" '
            'stroke-linecap="round"/>' % sd)
    if name == "edda":  # laughter lines
        return nose + ('<path d="M240,236 l-12,-5 M240,246 l-12,3 M360,236 l12,-5 M360,246 l12,3 '
                       'M270,262 q-12,14 -8,32 M330,262 q12,14 8,32" stroke="%s" stroke-width="3" '
                       'fill="none" stroke-linecap="round"/>' % sd)
    if name == "tobin":  # freckles
        dots = "".join('<circle cx="%d" cy="%d" r="3" fill="%s"/>' % (x, y, sd)
                       for x, y in ((250, 262), (262, 270), (272, 258), (328, 258),
                                    (338, 270), (350, 262), (296, 252)))
        return nose + dots
    return nose + ('<circle cx="212" cy="272" r="6" fill="#e0b050"/>'
                   '<circle cx="388" cy="272" r="6" fill="#e0b050"/>')  # earrings


def body_svg(name, p):
    s, sd = p["skin"], p["skin_dark"]
    parts = []
    parts.append('<ellipse cx="300" cy="1150" rx="150" ry="20" fill="#000" opacity="0.18"/>')
    parts.append(hair_back(name, p))
    parts.append(legs_svg(p, p["legs"]))
    parts.append('<ellipse cx="258" cy="1146" rx="44" ry="20" fill="%s"/>'
                 '<ellipse cx="342" cy="1146" rx="44" ry="20" fill="%s"/>' % (p["shoe"], p["shoe"]))
    parts.append('<rect x="276" y="300" width="48" height="66" rx="14" fill="%s"/>' % sd)
    parts.append('<path d="%s" fill="%s"/>' % (torso_path(p), p["under"]))
    for side in "lr":
        parts.append('<path d="%s" stroke="%s" stroke-width="52" stroke-linecap="round" '
                     'fill="none"/>' % (arm_path(p, side), p["under"]))
        hx, hy = hand_xy(p, side)
        parts.append('<ellipse cx="%d" cy="%d" rx="25" ry="29" fill="%s"/>' % (hx, hy, s))
    # ears, head
    parts.append('<ellipse cx="212" cy="240" rx="16" ry="24" fill="%s"/>'
                 '<ellipse cx="388" cy="240" rx="16" ry="24" fill="%s"/>' % (sd, sd))
    parts.append('<ellipse cx="300" cy="230" rx="88" ry="100" fill="url(#skin)"/>')
    parts.append(face_marks(name, p))
    parts.append(hair_front(name, p))
    defs = ('<radialGradient id="skin" cx="0.45" cy="0.4" r="0.7">'
            '<stop offset="0.6" stop-color="%s"/><stop offset="1" stop-color="%s"/>'
            '</radialGradient>' % (s, sd))
    return svg(600, 1200, "\n".join(parts), defs)


def arm_length(p):
    """Length of the (quadratic) arm path, summed over short chords."""
    (x0, x1, x2), n, total = (300 - p["sw"] + 14, 300 - p["sw"] - 26, 300 - p["sw"] - 6), 200, 0.0
    px, py = x0, 400.0
    for i in range(1, n + 1):
        t = i / n
        x = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * x1 + t * t * x2
        y = (1 - t) ** 2 * 400 + 2 * t * (1 - t) * 560 + t * t * 712
        total += ((x - px) ** 2 + (y - py) ** 2) ** 0.5
        px, py = x, y
    return total


def along_arm(p, side, color, width, start, length):
    """A band of the arm path from `start` to `start + length` (path units)."""
    return ('<path d="%s" stroke="%s" stroke-width="%d" fill="none" '
            'stroke-dasharray="0 %.1f %.1f 4000"/>' % (arm_path(p, side), color, width, start, length))


def sleeves(p, color, width=60, trim=None, upto=14, rolled=None):
    """Sleeves over the arms, ending `upto` units above the wrist (or rolled
    to the elbow: `rolled` is the turned-up cuff's colour)."""
    full = arm_length(p)
    out = []
    for side in "lr":
        x0 = 300 + (-1 if side == "l" else 1) * (p["sw"] - 14)
        end = full * 0.55 if rolled else full - upto
        out.append(along_arm(p, side, color, width, 0, end))
        out.append('<circle cx="%d" cy="404" r="%d" fill="%s"/>' % (x0, width // 2, color))
        if rolled:
            out.append(along_arm(p, side, p["skin"], 54, end, full - end))
            out.append(along_arm(p, side, rolled, width + 6, end - 24, 26))
        elif trim:
            out.append(along_arm(p, side, trim, width + 4, end - 20, 20))
    return "".join(out)


def hands(p):
    """The hands again, on top of the outfit (the outfit is drawn over the body)."""
    out = []
    for side in "lr":
        hx, hy = hand_xy(p, side)
        out.append('<ellipse cx="%d" cy="%d" rx="25" ry="29" fill="%s"/>'
                   '<path d="M%d,%d q6,10 0,22" stroke="%s" stroke-width="3" fill="none" '
                   'opacity="0.6"/>' % (hx, hy, p["skin"], hx + (8 if side == "l" else -8),
                                        hy - 8, p["skin_dark"]))
    return "".join(out)


def coat(p, color, dark, hem, flare=26):
    sw, hw = p["sw"] + 4, p["hw"] + flare
    return ('<path d="M%d,398 Q%d,362 268,350 L300,420 L332,350 Q%d,362 %d,398 '
            'L%d,%d Q300,%d %d,%d Z" fill="%s"/>'
            '<path d="M300,420 L300,%d" stroke="%s" stroke-width="5"/>' %
            (300 - sw, 300 - sw + 4, 300 + sw - 4, 300 + sw,
             300 + hw, hem, hem + 14, 300 - hw, hem, color, hem + 8, dark))


def buttons(color, ys, x=314):
    return "".join('<circle cx="%d" cy="%d" r="8" fill="%s"/>' % (x, y, color) for y in ys)


def outfits(name, p):
    """Return {outfit id: (svg, en name, en description)}."""
    o = {}
    if name == "edda":
        # yellow oilskin storm coat, hood down, sou'wester-free
        b = [legs_svg(p, "#2f3a44", 900),
             coat(p, "#f2b632", "#b9841a", 960),
             '<path d="M252,354 Q300,392 348,354 Q360,338 340,330 Q300,360 260,330 Q240,338 252,354 Z" '
             'fill="#d99b1f"/>',
             sleeves(p, "#f2b632", trim="#b9841a"),
             buttons("#6b4a12", (470, 560, 650, 740, 830)),
             '<path d="M%d,820 l46,0 M%d,820 l46,0" stroke="#b9841a" stroke-width="8" '
             'stroke-linecap="round"/>' % (300 - p["sw"] + 24, 300 + p["sw"] - 70)]
        o["oilskin"] = ("".join(b), "Oilskin storm coat",
                        "A yellow oilskin coat to the knees, buttoned to the throat.")
        knit = "".join('<path d="M%d,400 L%d,760" stroke="#26375a" stroke-width="6" '
                       'stroke-dasharray="10 8"/>' % (x, x) for x in (250, 285, 315, 350))
        b = ['<path d="M%d,760 L%d,1060 L%d,1060 L%d,760 Z" fill="#4a4038"/>' %
             (300 - p["hw"], 300 - p["hw"] - 20, 300 + p["hw"] + 20, 300 + p["hw"]),
             '<path d="%s" fill="#31477a"/>' % torso_path(p, 800, 6),
             knit,
             sleeves(p, "#31477a", 62, "#26375a"),
             '<path d="M262,352 Q300,400 338,352" stroke="#26375a" stroke-width="16" fill="none"/>',
             '<rect x="%d" y="770" width="%d" height="30" fill="#26375a"/>' %
             (300 - p["hw"] - 6, 2 * p["hw"] + 12)]
        o["guernsey"] = ("".join(b), "Guernsey and skirt",
                         "A navy cable-knit fisherman's jumper over a long brown skirt.")
        b = ['<path d="M%d,700 L%d,1110 L%d,1110 L%d,700 Z" fill="#efe7d6"/>' %
             (300 - p["ww"], 300 - p["hw"] - 30, 300 + p["hw"] + 30, 300 + p["ww"]),
             '<path d="%s" fill="#efe7d6"/>' % torso_path(p, 780),
             sleeves(p, "#efe7d6", 56),
             # the shawl hangs over both shoulders, open down the front
             '<path d="M%d,392 Q300,332 %d,392 L%d,700 L336,700 L328,420 Q300,446 272,420 '
             'L264,700 L%d,700 Z" fill="#a83a3a"/>' %
             (300 - p["sw"] - 14, 300 + p["sw"] + 14, 300 + p["sw"] + 24, 300 - p["sw"] - 24),
             '<path d="M278,440 L272,690 M322,440 L328,690" stroke="#8a2c2c" stroke-width="4"/>',
             '<path d="%s" stroke="#a83a3a" stroke-width="5" stroke-linecap="round"/>' %
             " ".join("M%d,700 l0,26" % x for x in
                      list(range(300 - p["sw"] - 20, 266, 12)) + list(range(340, 300 + p["sw"] + 26, 12))),
             '<path d="M%d,430 Q300,520 %d,430" stroke="#8a2c2c" stroke-width="4" fill="none" '
             'stroke-dasharray="6 8"/>' % (300 - p["sw"], 300 + p["sw"]),
             ]
        o["nightshawl"] = ("".join(b), "Nightgown and shawl",
                           "A long cream nightgown under a red knitted shawl.")
    elif name == "tobin":
        b = [legs_svg(p, "#6b5a44"),
             '<rect x="%d" y="960" width="40" height="40" fill="#5a4a38"/>' % (300 - p["hw"] + 12),
             '<path d="%s" fill="#f3ecdc"/>' % torso_path(p),
             sleeves(p, "#f3ecdc", 58, rolled="#e4dac4"),
             '<rect x="%d" y="636" width="%d" height="134" fill="#6b5a44"/>' %
             (300 - p["ww"] - 2, 2 * p["ww"] + 4),
             '<path d="M%d,400 L%d,650 M%d,400 L%d,650" stroke="#8c2f2f" stroke-width="14"/>' %
             (300 - p["sw"] + 34, 300 - 40, 300 + p["sw"] - 34, 300 + 40),
             '<rect x="%d" y="630" width="%d" height="16" fill="#3a2a1c"/>' %
             (300 - p["ww"] - 2, 2 * p["ww"] + 4),
             '<rect x="288" y="626" width="24" height="24" rx="3" fill="none" stroke="#c9a04a" '
             'stroke-width="5"/>',
             '<path d="M272,354 L300,392 L328,354" stroke="#d8cfb8" stroke-width="6" fill="none"/>']
        o["workshirt"] = ("".join(b), "Work shirt and braces",
                          "Rolled shirt sleeves, red braces and patched brown trousers.")
        b = [legs_svg(p, "#2e3a36", 900),
             coat(p, "#3f6b4f", "#2a4a36", 930, 22),
             sleeves(p, "#3f6b4f", 62, "#2a4a36"),
             buttons("#1d2e24", (470, 560, 650, 740)),
             # sou'wester hat over the hair
             '<path d="M200,194 Q200,80 300,76 Q400,80 400,194 Z" fill="#3f6b4f"/>'
             '<path d="M260,100 Q300,90 340,100" stroke="#4f7d5f" stroke-width="5" fill="none"/>'
             '<path d="M172,206 Q300,140 428,206 Q436,222 414,220 Q300,168 186,220 Q164,222 172,206 Z" '
             'fill="#2f5a40"/>'
             '<path d="M210,214 Q216,260 230,300 M390,214 Q384,260 370,300" stroke="#2a2a2a" '
             'stroke-width="3" fill="none"/>']
        o["raincoat"] = ("".join(b), "Oilskin and sou'wester",
                         "A green oilskin coat and a wide-brimmed sou'wester hat.")
        b = [legs_svg(p, "#3a3f52"),
             '<path d="%s" fill="#f6f1e6"/>' % torso_path(p),
             coat(p, "#2c3e6b", "#1e2c50", 800, 10),
             '<path d="M268,352 L300,420 L332,352 Z" fill="#f6f1e6"/>',
             '<path d="M282,380 L300,392 L282,404 Z M318,380 L300,392 L318,404 Z" fill="#c23b3b"/>',
             '<path d="M268,352 L300,430 L256,470 Z M332,352 L300,430 L344,470 Z" fill="#1e2c50"/>',
             '<path d="M300,430 L300,800" stroke="#1e2c50" stroke-width="4"/>',
             sleeves(p, "#2c3e6b", 60, "#1e2c50"),
             buttons("#d4b45a", (520, 600, 680), 316),
             '<path d="M%d,500 q18,-10 36,0" stroke="#d4b45a" stroke-width="4" fill="none"/>' %
             (300 + 30)]
        o["sunday"] = ("".join(b), "Sunday best",
                       "A navy jacket a size too big, a white shirt and a red bow tie.")
    else:  # nell
        skirt = ('<path d="M%d,700 L%d,1100 Q300,1120 %d,1100 L%d,700 Z" fill="%%s"/>' %
                 (300 - p["ww"], 300 - p["hw"] - 50, 300 + p["hw"] + 50, 300 + p["ww"]))
        b = [skirt % "#5a6e8c",
             '<path d="%s" fill="#5a6e8c"/>' % torso_path(p, 720),
             sleeves(p, "#5a6e8c", 58, "#e8dcc6"),
             '<path d="M%d,560 L%d,1040 Q300,1056 %d,1040 L%d,560 Q300,540 %d,560 Z" fill="#efe6d4"/>' %
             (300 - p["ww"] + 4, 300 - p["hw"] - 10, 300 + p["hw"] + 10, 300 + p["ww"] - 4,
              300 - p["ww"] + 4),
             '<path d="M%d,640 L%d,640" stroke="#d8cbb2" stroke-width="12"/>' %
             (300 - p["ww"] - 2, 300 + p["ww"] + 2),
             '<rect x="262" y="760" width="76" height="70" rx="8" fill="#e2d6c0"/>',
             '<path d="M262,352 Q300,386 338,352" stroke="#e8dcc6" stroke-width="12" fill="none"/>',
             '<path d="M%d,1000 q30,-14 60,0 q30,14 60,0 q30,-14 60,0" stroke="#d8cbb2" stroke-width="5" '
             'fill="none"/>' % (300 - 90)]
        o["apron"] = ("".join(b), "Dress and apron",
                      "A blue work dress with rolled cuffs and a well-scrubbed apron.")
        b = [skirt % "#4a3b36",
             coat(p, "#7a2f3a", "#5a1f28", 980, 34),
             sleeves(p, "#7a2f3a", 64, "#5a1f28"),
             buttons("#d8b46a", (480, 570, 660, 750, 840)),
             '<path d="M236,350 Q300,410 364,350 L372,380 Q300,446 228,380 Z" fill="#d9a13a"/>',
             '<path d="M340,390 L360,520 L334,520 L326,400 Z" fill="#d9a13a"/>',
             '<path d="M340,500 l0,20 M348,500 l2,20 M356,500 l4,20" stroke="#b07e22" stroke-width="3"/>']
        o["woolcoat"] = ("".join(b), "Wool coat and scarf",
                         "A long claret wool coat and a mustard scarf, for going out in weather.")
        b = [skirt % "#a8323a",
             '<path d="%s" fill="#a8323a"/>' % torso_path(p, 720),
             sleeves(p, "#a8323a", 58, "#f3ead8"),
             '<path d="M246,356 Q300,430 354,356 L366,372 Q300,462 234,372 Z" fill="#f3ead8"/>',
             '<path d="M246,376 q8,10 16,0 q8,10 16,0 q8,10 16,0 q8,10 16,0 q8,10 16,0 q8,10 16,0 q8,10 16,0" '
             'stroke="#f3ead8" stroke-width="4" fill="none" transform="translate(0,60)"/>',
             '<rect x="%d" y="632" width="%d" height="20" fill="#2a1d1a"/>' %
             (300 - p["ww"] - 2, 2 * p["ww"] + 4),
             '<circle cx="300" cy="426" r="10" fill="#e0b050"/>',
             '<path d="M%d,1060 Q300,1080 %d,1060" stroke="#f3ead8" stroke-width="8" fill="none"/>' %
             (300 - p["hw"] - 44, 300 + p["hw"] + 44)]
        o["festive"] = ("".join(b), "Harvest-dance dress",
                        "A red dress with a lace collar and a brooch, kept for dances.")
    return o


EXPR = ["neutral", "happy", "sad", "surprised", "angry"]


def eye(cx, cy, p, ry=18, look=0, lid=None):
    clip = "eye%d" % cx  # the iris is clipped to the white of the eye
    s = ('<clipPath id="%s"><ellipse cx="%d" cy="%d" rx="27" ry="%d"/></clipPath>'
         '<ellipse cx="%d" cy="%d" rx="27" ry="%d" fill="#fbfaf6"/>'
         '<g clip-path="url(#%s)"><circle cx="%d" cy="%d" r="%d" fill="%s"/>'
         '<circle cx="%d" cy="%d" r="%d" fill="#1a1412"/>'
         '<circle cx="%d" cy="%d" r="4" fill="#fff"/></g>' %
         (clip, cx, cy, ry, cx, cy, ry, clip, cx, cy + look, 15, p["eye"], cx, cy + look, 7,
          cx - 5, cy + look - 5))
    # upper lid line
    s += ('<path d="M%d,%d Q%d,%d %d,%d" stroke="#2a1d1a" stroke-width="6" fill="none" '
          'stroke-linecap="round"/>' % (cx - 30, cy + 2, cx, cy - ry - 10, cx + 30, cy + 2))
    if lid:  # a heavy lid over the top part of the eye (sad / angry)
        s += lid
    return s


def expression_svg(name, p, expr):
    b = p["brow"]
    L, R, Y = 130, 270, 215
    parts = []
    if expr == "neutral":
        parts += [eye(L, Y, p), eye(R, Y, p),
                  '<path d="M95,168 Q130,152 165,164 M235,164 Q270,152 305,168" stroke="%s" '
                  'stroke-width="10" fill="none" stroke-linecap="round"/>' % b,
                  '<path d="M168,312 Q200,322 232,312" stroke="%s" stroke-width="7" fill="none" '
                  'stroke-linecap="round"/>' % p["lip"]]
    elif expr == "happy":
        parts += ['<path d="M102,222 Q130,190 158,222 M242,222 Q270,190 298,222" stroke="#2a1d1a" '
                  'stroke-width="8" fill="none" stroke-linecap="round"/>',
                  '<path d="M95,160 Q130,140 165,156 M235,156 Q270,140 305,160" stroke="%s" '
                  'stroke-width="10" fill="none" stroke-linecap="round"/>' % b,
                  '<ellipse cx="104" cy="262" rx="26" ry="14" fill="#e8707a" opacity="0.35"/>'
                  '<ellipse cx="296" cy="262" rx="26" ry="14" fill="#e8707a" opacity="0.35"/>',
                  '<path d="M158,298 Q200,306 242,298 Q232,350 200,352 Q168,350 158,298 Z" '
                  'fill="#7a2630"/>'
                  '<path d="M166,302 Q200,310 234,302 L232,312 Q200,318 168,312 Z" fill="#fff"/>'
                  '<path d="M180,336 Q200,326 220,336 Q210,348 200,348 Q190,348 180,336 Z" '
                  'fill="#d8606a"/>']
    elif expr == "sad":
        lidl = ('<path d="M98,226 Q128,194 162,206 L162,176 L98,176 Z" fill="%s"/>'
                '<path d="M98,226 Q128,194 162,206" stroke="#2a1d1a" stroke-width="6" fill="none" '
                'stroke-linecap="round"/>' % p["skin"])
        lidr = ('<path d="M302,226 Q272,194 238,206 L238,176 L302,176 Z" fill="%s"/>'
                '<path d="M302,226 Q272,194 238,206" stroke="#2a1d1a" stroke-width="6" fill="none" '
                'stroke-linecap="round"/>' % p["skin"])
        parts += [eye(L, Y, p, 17, 4, lidl), eye(R, Y, p, 17, 4, lidr),
                  '<path d="M95,170 Q128,168 165,148 M235,148 Q272,168 305,170" stroke="%s" '
                  'stroke-width="10" fill="none" stroke-linecap="round"/>' % b,
                  '<path d="M172,322 Q200,304 228,322" stroke="%s" stroke-width="7" fill="none" '
                  'stroke-linecap="round"/>' % p["lip"],
                  '<path d="M112,240 q-6,14 0,20 q6,-6 0,-20 Z" fill="#8fc8f0" opacity="0.9"/>']
    elif expr == "surprised":
        parts += [eye(L, 212, p, 24), eye(R, 212, p, 24),
                  '<path d="M95,150 Q130,126 165,146 M235,146 Q270,126 305,150" stroke="%s" '
                  'stroke-width="10" fill="none" stroke-linecap="round"/>' % b,
                  '<ellipse cx="200" cy="318" rx="17" ry="22" fill="#7a2630"/>']
    else:  # angry
        lidl = ('<path d="M98,198 L162,214 L162,180 L98,180 Z" fill="%s"/>'
                '<path d="M98,198 L162,214" stroke="#2a1d1a" stroke-width="6" stroke-linecap="round"/>'
                % p["skin"])
        lidr = ('<path d="M238,214 L302,198 L302,180 L238,180 Z" fill="%s"/>'
                '<path d="M238,214 L302,198" stroke="#2a1d1a" stroke-width="6" stroke-linecap="round"/>'
                % p["skin"])
        parts += [eye(L, Y, p, 15, 0, lidl), eye(R, Y, p, 15, 0, lidr),
                  '<path d="M95,158 L168,184 M232,184 L305,158" stroke="%s" stroke-width="12" '
                  'fill="none" stroke-linecap="round"/>' % b,
                  '<path d="M170,320 Q200,306 230,320" stroke="%s" stroke-width="8" fill="none" '
                  'stroke-linecap="round"/>' % p["lip"],
                  '<path d="M186,312 L214,312" stroke="#fff" stroke-width="4" opacity="0.8"/>']
    return svg(400, 400, "\n".join(parts))


def make_sprites():
    for name, p in CHARS.items():
        save("sprites/%s/body.svg" % name, body_svg(name, p))
        for oid, (body, _, _) in outfits(name, p).items():
            save("sprites/%s/outfit-%s.svg" % (name, oid), svg(600, 1200, body + hands(p)))
        for e in EXPR:
            save("sprites/%s/face-%s.svg" % (name, e), expression_svg(name, p, e))


# ================================================================= backgrounds

def rng_points(seed, n, x0, x1, y0, y1):
    """A tiny deterministic LCG so the art needs no imports."""
    v = seed
    out = []
    for _ in range(n):
        v = (v * 1103515245 + 12345) % 2147483648
        a = v / 2147483648.0
        v = (v * 1103515245 + 12345) % 2147483648
        b = v / 2147483648.0
        out.append((x0 + a * (x1 - x0), y0 + b * (y1 - y0)))
    return out


def lighthouse(x, base, h, w, lit=True):
    """A striped tower standing on (x, base), h tall, w wide at the foot."""
    top = base - h
    tw = w * 0.7
    s = ['<path d="M%.0f,%.0f L%.0f,%.0f L%.0f,%.0f L%.0f,%.0f Z" fill="#f4efe6"/>' %
         (x - w / 2, base, x - tw / 2, top, x + tw / 2, top, x + w / 2, base)]
    for k in (0.2, 0.55):
        y0, y1 = base - h * k, base - h * (k + 0.17)
        f0 = w / 2 - (w - tw) / 2 * k
        f1 = w / 2 - (w - tw) / 2 * (k + 0.17)
        s.append('<path d="M%.0f,%.0f L%.0f,%.0f L%.0f,%.0f L%.0f,%.0f Z" fill="#c8453c"/>' %
                 (x - f0, y0, x - f1, y1, x + f1, y1, x + f0, y0))
    s.append('<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#3a2f3f"/>' %
             (x - tw / 2 - 4, top - 4, tw + 8, 6))
    s.append('<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="%s"/>' %
             (x - tw / 2 + 2, top - h * 0.14, tw - 4, h * 0.14 - 4, "#ffe9a8" if lit else "#55606e"))
    s.append('<path d="M%.0f,%.0f L%.0f,%.0f L%.0f,%.0f Z" fill="#c8453c"/>' %
             (x - tw / 2 - 2, top - h * 0.14, x, top - h * 0.24, x + tw / 2 + 2, top - h * 0.14))
    return "".join(s)


def bg_harbour():
    defs = ('<linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">'
            '<stop offset="0" stop-color="#262a58"/><stop offset="0.42" stop-color="#6e4a8e"/>'
            '<stop offset="0.78" stop-color="#ee8a5c"/><stop offset="1" stop-color="#ffcf8e"/>'
            '</linearGradient>'
            '<linearGradient id="sea" x1="0" y1="0" x2="0" y2="1">'
            '<stop offset="0" stop-color="#8a5a84"/><stop offset="0.35" stop-color="#4a3a6e"/>'
            '<stop offset="1" stop-color="#1c1f3e"/></linearGradient>'
            '<radialGradient id="sun"><stop offset="0" stop-color="#fff1c9"/>'
            '<stop offset="0.35" stop-color="#ffd38a" stop-opacity="0.9"/>'
            '<stop offset="1" stop-color="#ff9a5c" stop-opacity="0"/></radialGradient>'
            '<linearGradient id="beam" x1="1" y1="0" x2="0" y2="0">'
            '<stop offset="0" stop-color="#fff4c2" stop-opacity="0.75"/>'
            '<stop offset="1" stop-color="#fff4c2" stop-opacity="0"/></linearGradient>'
            '<radialGradient id="lamp"><stop offset="0" stop-color="#ffe7a0" stop-opacity="0.9"/>'
            '<stop offset="1" stop-color="#ffb85a" stop-opacity="0"/></radialGradient>')
    s = ['<rect width="1280" height="440" fill="url(#sky)"/>']
    s += ['<circle cx="%.0f" cy="%.0f" r="%.1f" fill="#fff" opacity="%.2f"/>' %
          (x, y, 1 + (x % 3) * 0.5, 0.4 + (y % 5) / 10)
          for x, y in rng_points(7, 40, 0, 1280, 0, 170)]
    s.append('<circle cx="760" cy="430" r="190" fill="url(#sun)"/>'
             '<circle cx="760" cy="430" r="52" fill="#ffe3a6"/>')
    for cx, cy, rx in ((260, 250, 150), (420, 215, 110), (980, 270, 170), (1120, 235, 90)):
        s.append('<ellipse cx="%d" cy="%d" rx="%d" ry="16" fill="#f6a07a" opacity="0.45"/>'
                 '<ellipse cx="%d" cy="%d" rx="%d" ry="11" fill="#ffc59a" opacity="0.35"/>' %
                 (cx, cy, rx, cx + 30, cy - 10, rx * 0.6))
    s.append('<rect y="430" width="1280" height="290" fill="url(#sea)"/>')
    # sun glitter on the water
    for i, (x, y) in enumerate(rng_points(11, 34, 690, 830, 440, 600)):
        s.append('<rect x="%.0f" y="%.0f" width="%.0f" height="3" rx="1.5" fill="#ffd9a0" '
                 'opacity="0.7"/>' % (x - (y - 430) * 0.2, y, 14 + (y - 430) * 0.25))
    # headland and lighthouse on the right
    s.append('<path d="M930,440 Q1000,400 1060,392 Q1120,360 1180,362 Q1240,366 1280,350 '
             'L1280,440 Z" fill="#3a2c4a"/>')
    s.append('<polygon points="1150,210 0,140 0,290" fill="url(#beam)" opacity="0.55"/>')
    s.append('<circle cx="1150" cy="210" r="60" fill="url(#lamp)"/>')
    s.append(lighthouse(1150, 372, 150, 44))
    # the town on the left: houses on the quay
    houses = [(0, 120, 150, "#5a4668"), (110, 100, 190, "#6b4f6e"), (200, 130, 160, "#4e4466"),
              (320, 110, 210, "#684a62"), (420, 120, 170, "#57486c")]
    for x, w, h, c in houses:
        top = 470 - h
        s.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>' % (x, top, w, h, c))
        s.append('<path d="M%d,%d L%d,%d L%d,%d Z" fill="#3c2e48"/>' %
                 (x - 8, top, x + w // 2, top - 46, x + w + 8, top))
        s.append('<rect x="%d" y="%d" width="14" height="26" fill="#3c2e48"/>' %
                 (x + w - 34, top - 36))
        for wx in range(x + 18, x + w - 24, 38):
            for wy in range(top + 22, 430, 52):
                lit = (wx * 7 + wy * 3) % 5 != 0
                s.append('<rect x="%d" y="%d" width="20" height="26" rx="3" fill="%s"/>' %
                         (wx, wy, "#ffd46e" if lit else "#2e2640"))
    # the far quay the houses stand on, and their lights in the water
    s.append('<path d="M0,462 L560,462 L580,486 L0,486 Z" fill="#2e2540"/>'
             '<path d="M0,462 L560,462" stroke="#6a5878" stroke-width="3"/>')
    for x, y in rng_points(29, 14, 10, 540, 492, 540):
        s.append('<rect x="%.0f" y="%.0f" width="%d" height="3" rx="1.5" fill="#ffd46e" '
                 'opacity="0.45"/>' % (x, y, 10 + int(x) % 14))
    # a fishing boat
    s.append('<path d="M520,520 L700,520 Q690,556 650,560 L560,560 Q528,552 520,520 Z" '
             'fill="#2c2440"/><rect x="590" y="500" width="40" height="22" fill="#3a3050"/>'
             '<path d="M612,520 L612,402" stroke="#2c2440" stroke-width="5"/>'
             '<path d="M612,410 L668,500 L612,500 Z" fill="#d9b38c" opacity="0.9"/>'
             '<circle cx="612" cy="404" r="5" fill="#ffd46e"/>')
    # the quay: stone wall, bollard, lamp post
    s.append('<path d="M0,560 L1280,610 L1280,720 L0,720 Z" fill="#3b3048"/>'
             '<path d="M0,560 L1280,610 L1280,626 L0,578 Z" fill="#5c4c68"/>')
    for i in range(14):
        x = i * 100
        s.append('<path d="M%d,%d L%d,720" stroke="#2c2438" stroke-width="3"/>' %
                 (x, 580 + x * 0.04, x - 20))
    s.append('<path d="M0,650 L1280,680" stroke="#2c2438" stroke-width="3"/>')
    s.append('<rect x="300" y="540" width="36" height="46" rx="8" fill="#241c30"/>'
             '<rect x="294" y="534" width="48" height="14" rx="6" fill="#2e2440"/>')
    s.append('<circle cx="1010" cy="430" r="90" fill="url(#lamp)"/>'
             '<rect x="1004" y="440" width="12" height="170" fill="#241c30"/>'
             '<path d="M992,420 L1028,420 L1022,452 L998,452 Z" fill="#ffe7a0" stroke="#241c30" '
             'stroke-width="5"/><path d="M990,418 L1030,418 L1010,400 Z" fill="#241c30"/>')
    s.append('<path d="M336,560 C420,600 380,650 460,690" stroke="#8a6a4a" stroke-width="6" '
             'fill="none"/>')
    return svg(1280, 720, "\n".join(s), defs)


def storm_window(x, y, w, h, seed, extra=""):
    """An arched window showing a stormy night, rain and a lightning bolt."""
    clip = "win%d" % seed
    arch = ("M%d,%d L%d,%d A%d,%d 0 0 1 %d,%d L%d,%d Z" %
            (x, y + h, x, y + w / 2, w / 2, w / 2, x + w, y + w / 2, x + w, y + h))
    s = ['<clipPath id="%s"><path d="%s"/></clipPath>' % (clip, arch)]
    inner = ['<rect x="%d" y="%d" width="%d" height="%d" fill="url(#night)"/>' % (x, y, w, h), extra]
    inner += ['<path d="M%.0f,%.0f l-10,34" stroke="#9fb4d8" stroke-width="2" opacity="0.55"/>' %
              p for p in rng_points(seed, 26, x, x + w + 20, y, y + h)]
    inner.append('<path d="M%d,%d l-18,46 l16,-4 l-22,52" stroke="#f4f2ff" stroke-width="4" '
                 'fill="none" stroke-linejoin="round"/>' % (x + w * 0.65, y + 20))
    s.append('<g clip-path="url(#%s)">%s</g>' % (clip, "".join(inner)))
    s.append('<path d="%s" fill="none" stroke="#1a1b24" stroke-width="12"/>' % arch)
    s.append('<path d="M%d,%d L%d,%d M%d,%d L%d,%d" stroke="#1a1b24" stroke-width="6"/>' %
             (x + w / 2, y, x + w / 2, y + h, x, y + h * 0.55, x + w, y + h * 0.55))
    s.append('<rect x="%d" y="%d" width="%d" height="14" fill="#4a4d5e"/>' % (x - 12, y + h, w + 24))
    return "".join(s)


NIGHT = ('<linearGradient id="night" x1="0" y1="0" x2="0" y2="1">'
         '<stop offset="0" stop-color="#1b2240"/><stop offset="1" stop-color="#3c4d74"/>'
         '</linearGradient>')


def bg_stairs():
    import math
    defs = (NIGHT +
            '<linearGradient id="wall" x1="0" y1="0" x2="1" y2="0">'
            '<stop offset="0" stop-color="#1c1e28"/><stop offset="0.5" stop-color="#3a3d4c"/>'
            '<stop offset="1" stop-color="#1c1e28"/></linearGradient>'
            '<linearGradient id="newel" x1="0" y1="0" x2="1" y2="0">'
            '<stop offset="0" stop-color="#4a4c58"/><stop offset="0.4" stop-color="#9a9aa6"/>'
            '<stop offset="1" stop-color="#3a3c48"/></linearGradient>'
            '<radialGradient id="glow"><stop offset="0" stop-color="#ffcf7a" stop-opacity="0.55"/>'
            '<stop offset="1" stop-color="#ffcf7a" stop-opacity="0"/></radialGradient>'
            '<pattern id="stones" width="120" height="60" patternUnits="userSpaceOnUse">'
            '<path d="M0,0 H120 M0,30 H120 M30,0 V30 M90,30 V60" stroke="#15161e" '
            'stroke-width="3" fill="none" opacity="0.7"/></pattern>')
    s = ['<rect width="1280" height="720" fill="url(#wall)"/>',
         '<rect width="1280" height="720" fill="url(#stones)"/>',
         storm_window(960, 150, 130, 210, 5),
         '<circle cx="310" cy="250" r="280" fill="url(#glow)"/>']
    # the spiral: treads are wedges around the newel post, seen from a little
    # above (a point at angle t, radius r, height y is drawn at
    # (640 + r sin t, y + 0.14 r cos t)); far steps first, then the post,
    # then near steps
    def pt(r, t, y):
        return "%.0f,%.0f" % (640 + r * math.sin(t), y + 0.14 * r * math.cos(t))

    back, front, rail = [], [], [[]]
    span = 0.5
    for i in range(17):
        t0 = -1.4 + i * span
        t1 = t0 + span
        y = 712 - i * 46
        near = math.cos(t0 + span / 2) > 0
        top = "#8e877a" if near else "#4a4642"
        face = "#5c564e" if near else "#302d2c"
        edge = "#3e3a36" if near else "#222020"
        riser = ('<polygon points="%s %s %s %s" fill="%s"/>' %
                 (pt(28, t0, y), pt(310, t0, y), pt(310, t0, y + 46), pt(28, t0, y + 46), face))
        tread = ('<polygon points="%s %s %s %s" fill="%s" stroke="%s" stroke-width="2"/>' %
                 (pt(28, t0, y), pt(310, t0, y), pt(310, t1, y), pt(28, t1, y), top, edge))
        (front if near else back).append(riser + tread)
        if not near and rail[-1]:
            rail.append([])
        if near:
            rail[-1].append(pt(300, t0 + span / 2, y - 90))
            front.append('<path d="M%s L%s" stroke="#26262e" stroke-width="5"/>' %
                         (pt(300, t0 + span / 2, y), pt(300, t0 + span / 2, y - 90)))
    s += back
    s.append('<rect x="612" y="0" width="56" height="720" fill="url(#newel)"/>')
    s += front
    # the iron handrail follows the outer edge (split where it passes behind)
    for run in rail:
        if len(run) > 1:
            s.append('<polyline points="%s" stroke="#26262e" stroke-width="8" fill="none" '
                     'stroke-linejoin="round"/>' % " ".join(run))
    # the lantern on its hook
    s.append('<path d="M250,200 L310,200 L310,214" stroke="#20202a" stroke-width="6" fill="none"/>'
             '<path d="M290,214 L330,214 L326,280 L294,280 Z" fill="#ffdc8a" stroke="#20202a" '
             'stroke-width="6"/><path d="M284,214 L336,214 L310,196 Z" fill="#20202a"/>'
             '<rect x="288" y="280" width="44" height="10" fill="#20202a"/>')
    s.append('<rect width="1280" height="720" fill="#0a0b14" opacity="0.15"/>')
    return svg(1280, 720, "\n".join(s), defs)


def bg_lamp_room():
    defs = ('<linearGradient id="storm" x1="0" y1="0" x2="0" y2="1">'
            '<stop offset="0" stop-color="#0f1428"/><stop offset="0.7" stop-color="#2c3a5e"/>'
            '<stop offset="1" stop-color="#3c4e72"/></linearGradient>'
            '<linearGradient id="sea2" x1="0" y1="0" x2="0" y2="1">'
            '<stop offset="0" stop-color="#1e2a44"/><stop offset="1" stop-color="#0e1424"/>'
            '</linearGradient>'
            '<radialGradient id="core"><stop offset="0" stop-color="#fffbe8"/>'
            '<stop offset="0.3" stop-color="#ffe08a"/><stop offset="1" stop-color="#ffb040" '
            'stop-opacity="0"/></radialGradient>'
            '<linearGradient id="lens" x1="0" y1="0" x2="1" y2="0">'
            '<stop offset="0" stop-color="#9fd6d8" stop-opacity="0.5"/>'
            '<stop offset="0.5" stop-color="#fff6d0" stop-opacity="0.85"/>'
            '<stop offset="1" stop-color="#9fd6d8" stop-opacity="0.5"/></linearGradient>'
            '<linearGradient id="beamR" x1="0" y1="0" x2="1" y2="0">'
            '<stop offset="0" stop-color="#fff3c0" stop-opacity="0.6"/>'
            '<stop offset="1" stop-color="#fff3c0" stop-opacity="0"/></linearGradient>'
            '<linearGradient id="beamL" x1="1" y1="0" x2="0" y2="0">'
            '<stop offset="0" stop-color="#fff3c0" stop-opacity="0.35"/>'
            '<stop offset="1" stop-color="#fff3c0" stop-opacity="0"/></linearGradient>')
    s = ['<rect width="1280" height="720" fill="url(#storm)"/>',
         '<rect y="400" width="1280" height="140" fill="url(#sea2)"/>']
    for x, y in rng_points(3, 30, 0, 1280, 420, 530):
        s.append('<path d="M%.0f,%.0f q14,-8 28,0" stroke="#c8d6ea" stroke-width="3" fill="none" '
                 'opacity="0.5"/>' % (x, y))
    for x, y in rng_points(9, 90, 0, 1340, 0, 520):
        s.append('<path d="M%.0f,%.0f l-14,44" stroke="#a9bbdc" stroke-width="2" opacity="0.35"/>' %
                 (x, y))
    s.append('<path d="M180,40 l-30,70 l24,-6 l-34,84" stroke="#eef0ff" stroke-width="5" '
             'fill="none" stroke-linejoin="round" opacity="0.9"/>')
    # beams through the glass
    s.append('<polygon points="640,320 1280,150 1280,420" fill="url(#beamR)"/>')
    s.append('<polygon points="640,320 0,230 0,380" fill="url(#beamL)"/>')
    # window frames (the lantern's glazing bars)
    for x in (0, 213, 426, 853, 1066, 1279):
        s.append('<rect x="%d" y="0" width="14" height="540" fill="#1a1a22"/>' % (x - 7))
    s.append('<rect y="100" width="1280" height="10" fill="#1a1a22"/>')
    # the lamp and its great lens
    s.append('<circle cx="640" cy="320" r="250" fill="url(#core)" opacity="0.55"/>')
    s.append('<path d="M520,140 Q640,110 760,140 L790,330 L760,520 Q640,550 520,520 L490,330 Z" '
             'fill="url(#lens)" stroke="#c9a24a" stroke-width="6"/>')
    for k in range(-5, 6):
        y = 330 + k * 36
        hw = 150 - abs(k) * 6
        s.append('<path d="M%d,%d Q640,%d %d,%d" stroke="#e8f6f2" stroke-width="3" fill="none" '
                 'opacity="0.7"/>' % (640 - hw, y, y + 14, 640 + hw, y))
    s.append('<circle cx="640" cy="330" r="70" fill="url(#core)"/>')
    s.append('<path d="M640,110 L640,70 M600,70 L680,70" stroke="#c9a24a" stroke-width="8"/>')
    # the sill, the iron floor and the brass pedestal
    s.append('<rect y="520" width="1280" height="200" fill="#2e2628"/>'
             '<rect y="520" width="1280" height="22" fill="#4a3c3c"/>')
    for x in range(40, 1280, 80):
        s.append('<circle cx="%d" cy="531" r="4" fill="#7a6a62"/>' % x)
    s.append('<path d="M560,540 L720,540 L700,720 L580,720 Z" fill="#8a6a2e"/>'
             '<rect x="540" y="540" width="200" height="20" fill="#b08a3e"/>'
             '<path d="M600,600 L680,600 M596,650 L684,650" stroke="#6a5024" stroke-width="6"/>')
    s.append('<path d="M0,640 L1280,640" stroke="#241e20" stroke-width="4"/>')
    # a brass oil can and the keeper's log on the floor
    s.append('<rect x="230" y="600" width="54" height="64" rx="6" fill="#b08a3e"/>'
             '<path d="M284,612 L330,582" stroke="#b08a3e" stroke-width="8" stroke-linecap="round"/>'
             '<rect x="960" y="630" width="120" height="26" fill="#6a2e2e"/>'
             '<rect x="964" y="626" width="112" height="8" fill="#efe6d4"/>')
    return svg(1280, 720, "\n".join(s), defs)


def bg_tavern():
    defs = (NIGHT +
            '<linearGradient id="wood" x1="0" y1="0" x2="0" y2="1">'
            '<stop offset="0" stop-color="#4a2a1a"/><stop offset="1" stop-color="#7a4a2c"/>'
            '</linearGradient>'
            '<radialGradient id="fire"><stop offset="0" stop-color="#ffd27a" stop-opacity="0.7"/>'
            '<stop offset="1" stop-color="#ff8a3a" stop-opacity="0"/></radialGradient>'
            '<radialGradient id="lampg"><stop offset="0" stop-color="#ffe2a0" stop-opacity="0.6"/>'
            '<stop offset="1" stop-color="#ffc060" stop-opacity="0"/></radialGradient>')
    s = ['<rect width="1280" height="720" fill="url(#wood)"/>']
    for x in range(0, 1280, 64):
        s.append('<path d="M%d,0 L%d,560" stroke="#3a2014" stroke-width="3" opacity="0.6"/>' % (x, x))
    s.append('<rect y="0" width="1280" height="40" fill="#2e1a10"/>')
    for x in (160, 640, 1120):
        s.append('<rect x="%d" y="30" width="40" height="30" fill="#2e1a10"/>' % (x - 20))
    # window onto the storm, with the lighthouse beam far off
    far = ('<polygon points="140,300 300,250 300,330" fill="#fff3c0" opacity="0.35"/>'
           '<path d="M70,370 Q110,340 150,344 Q200,346 230,372 L230,380 L70,380 Z" fill="#11131e"/>'
           '<rect x="70" y="366" width="220" height="14" fill="#223052"/>' + lighthouse(140, 350, 56, 16))
    s.append(storm_window(70, 130, 220, 250, 21, far))
    # fireplace
    s.append('<path d="M380,580 L380,360 Q500,290 620,360 L620,580 Z" fill="#6e6a66"/>'
             '<path d="M410,580 L410,390 Q500,334 590,390 L590,580 Z" fill="#1a120e"/>'
             '<rect x="360" y="340" width="280" height="26" fill="#5a3a22"/>')
    for y in range(390, 580, 34):
        s.append('<path d="M380,%d L410,%d M590,%d L620,%d" stroke="#4a4642" stroke-width="3"/>' %
                 (y, y, y, y))
    s.append('<circle cx="500" cy="520" r="180" fill="url(#fire)"/>')
    s.append('<path d="M440,572 Q450,500 470,540 Q480,460 500,520 Q520,450 530,540 Q550,500 560,572 Z" '
             'fill="#ff8a2a"/><path d="M465,572 Q475,530 490,550 Q500,500 512,550 Q525,530 535,572 Z" '
             'fill="#ffd25a"/><rect x="440" y="566" width="120" height="14" rx="6" fill="#3a2212"/>')
    s.append('<rect x="420" y="300" width="46" height="40" rx="4" fill="#d9c8a8"/>'
             '<rect x="520" y="290" width="70" height="50" rx="4" fill="#c8a060"/>'
             '<path d="M532,316 q20,-18 46,0 q-20,10 -46,0 Z" fill="#efe6d4"/>')
    # floor
    s.append('<rect y="580" width="1280" height="140" fill="#3a2416"/>')
    for y in (610, 650, 700):
        s.append('<path d="M0,%d L1280,%d" stroke="#2a180e" stroke-width="3"/>' % (y, y))
    # shelves and bottles behind the bar
    for y in (190, 300):
        s.append('<rect x="760" y="%d" width="520" height="14" fill="#3a2014"/>' % y)
    colours = ["#2f6b4a", "#8a4a2a", "#c8a04a", "#4a5a8a", "#6b2a3a", "#3a7a6a"]
    for i, x in enumerate(range(780, 1270, 34)):
        for j, y in enumerate((190, 300)):
            c = colours[(i * 3 + j) % len(colours)]
            hgt = 50 + ((i + j) % 3) * 12
            s.append('<rect x="%d" y="%d" width="22" height="%d" rx="6" fill="%s"/>'
                     '<rect x="%d" y="%d" width="8" height="16" fill="%s"/>'
                     '<rect x="%d" y="%d" width="5" height="%d" rx="2" fill="#fff" opacity="0.25"/>' %
                     (x, y - hgt, hgt, c, x + 7, y - hgt - 14, c, x + 4, y - hgt + 6, hgt - 14))
    # the bar counter
    s.append('<rect x="740" y="420" width="540" height="200" fill="#5a3420"/>'
             '<rect x="720" y="404" width="560" height="26" rx="6" fill="#9a6a3e"/>')
    for x in range(770, 1280, 110):
        s.append('<rect x="%d" y="450" width="80" height="140" rx="6" fill="none" stroke="#432616" '
                 'stroke-width="5"/>' % x)
    s.append('<path d="M860,404 L860,360 L880,360 L880,404 Z M850,360 L890,360" fill="#c8a04a" '
             'stroke="#c8a04a" stroke-width="4"/>'
             '<rect x="1000" y="366" width="34" height="40" rx="5" fill="#d9b060"/>'
             '<rect x="1000" y="362" width="34" height="10" rx="4" fill="#f8f2e2"/>'
             '<path d="M1034,376 q16,0 16,14 q0,12 -16,12" stroke="#d9b060" stroke-width="6" fill="none"/>')
    # hanging lamps
    for x, y in ((640, 150), (1000, 120)):
        s.append('<circle cx="%d" cy="%d" r="150" fill="url(#lampg)"/>'
                 '<path d="M%d,40 L%d,%d" stroke="#20140c" stroke-width="4"/>'
                 '<path d="M%d,%d L%d,%d L%d,%d L%d,%d Z" fill="#ffe2a0" stroke="#20140c" '
                 'stroke-width="5"/>' % (x, y, x, x, y - 24, x - 18, y - 24, x + 18, y - 24,
                                         x + 12, y + 14, x - 12, y + 14))
    # a table and stool in front
    s.append('<ellipse cx="220" cy="612" rx="150" ry="30" fill="#7a4a2c"/>'
             '<rect x="206" y="620" width="28" height="100" fill="#4a2a1a"/>'
             '<rect x="150" y="574" width="30" height="38" rx="4" fill="#c8a060"/>'
             '<rect x="150" y="570" width="30" height="10" rx="4" fill="#f8f2e2"/>'
             '<ellipse cx="272" cy="606" rx="30" ry="8" fill="#d9c8a8"/>')
    # the inn sign: a painted gull
    s.append('<rect x="680" y="70" width="120" height="70" rx="8" fill="#2e4a5a" stroke="#c8a04a" '
             'stroke-width="5"/><path d="M702,110 q18,-22 38,0 q20,-22 38,0" stroke="#f8f2e2" '
             'stroke-width="6" fill="none" stroke-linecap="round"/>')
    return svg(1280, 720, "\n".join(s), defs)


def thumbnail():
    defs = (NIGHT +
            '<linearGradient id="tsea" x1="0" y1="0" x2="0" y2="1">'
            '<stop offset="0" stop-color="#2a3a60"/><stop offset="1" stop-color="#0e1424"/>'
            '</linearGradient>'
            '<linearGradient id="tbeam" x1="0" y1="0" x2="1" y2="0">'
            '<stop offset="0" stop-color="#fff0b0" stop-opacity="0"/>'
            '<stop offset="1" stop-color="#fff0b0" stop-opacity="0.7"/></linearGradient>'
            '<radialGradient id="tglow"><stop offset="0" stop-color="#ffe9a0" stop-opacity="0.9"/>'
            '<stop offset="1" stop-color="#ffb040" stop-opacity="0"/></radialGradient>')
    s = ['<rect width="640" height="360" fill="url(#night)"/>']
    s += ['<circle cx="%.0f" cy="%.0f" r="1.2" fill="#fff" opacity="0.6"/>' % p
          for p in rng_points(17, 30, 0, 640, 0, 150)]
    s.append('<polygon points="470,118 0,40 0,170" fill="url(#tbeam)"/>')
    s.append('<circle cx="470" cy="122" r="50" fill="url(#tglow)"/>')
    s.append('<rect y="250" width="640" height="110" fill="url(#tsea)"/>')
    s.append('<path d="M380,262 Q420,230 470,228 Q530,230 560,262 Z" fill="#1a1a2a"/>')
    s.append(lighthouse(470, 240, 110, 36))
    for x, y in rng_points(23, 16, 0, 640, 270, 350):
        s.append('<path d="M%.0f,%.0f q10,-6 20,0" stroke="#c8d6ea" stroke-width="2" fill="none" '
                 'opacity="0.6"/>' % (x, y))
    s.append('<text x="32" y="300" font-family="Georgia, \'DejaVu Serif\', serif" font-size="34" '
             'fill="#fff4d8">The Lighthouse</text>'
             '<text x="32" y="338" font-family="Georgia, \'DejaVu Serif\', serif" font-size="34" '
             'fill="#ffd27a">Keeper\'s Night</text>')
    return svg(640, 360, "\n".join(s), defs)


def main():
    make_sprites()
    save("backgrounds/harbour-dusk.svg", bg_harbour())
    save("backgrounds/lighthouse-stairs.svg", bg_stairs())
    save("backgrounds/lamp-room.svg", bg_lamp_room())
    save("backgrounds/salted-gull.svg", bg_tavern())
    save("thumbnail.svg", thumbnail())


if __name__ == "__main__":
    main()

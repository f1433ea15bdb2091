#!/usr/bin/env python3
"""test_image_api.py — the image endpoints of `simularity serve --image-model`
over real sockets, on ../shared/diffusion/micro-sd15 (SKIP when absent):
the web UI's txt2img gives the pixels of `simularity image gen` for the same
prompt, seed, steps, sampler, guidance and size; sd-models reports the
folder's identity as hashlib computes it; bad requests get precise 400s
and the server keeps serving; identical requests come from the cache
byte for byte (memory and folder, across a restart); /api/image streams
queued / start / step (with previews) / image / done; progress and interrupt
during a long job; a text request completes while an image is generated;
the queue bound answers 503.

Usage: python3 tests/server/test_image_api.py   (SIM_BIN: the binary)
"""
import base64
import hashlib
import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, SHARED, Server, check, counts, skip, sse_blocks  # noqa: E402

MODEL = os.path.join(SHARED, "diffusion", "micro-sd15")
MODEL_FILES = ["model_index.json", "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
               "tokenizer/merges.txt", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
               "vae/diffusion_pytorch_model.safetensors"]


def png_decode(data):
    """(width, height, channels, pixel bytes, {keyword: text}) of an 8-bit
    non-interlaced RGB/RGBA PNG, with zlib and struct only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, texts, w = 8, b"", {}, None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], "bad CRC"
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            k, _, t = body.partition(b"\0")
            texts[k.decode("latin-1")] = t.decode("latin-1")
        elif kind == b"iTXt":
            k, _, rest = body.partition(b"\0")
            rest = rest[2:].split(b"\0", 2)[2]
            texts[k.decode("latin-1")] = rest.decode("utf-8")
        pos += 12 + n
    raw, stride, out, prev = zlib.decompress(idat), w * ch, bytearray(), bytearray(w * ch)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - ch] if x >= ch else 0
            b, c = prev[x], prev[x - ch] if x >= ch else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return w, h, ch, bytes(out), texts


def png_encode(w, h, pix, ch=3):
    """An RGB (or RGBA) 8-bit PNG of pix, rows unfiltered."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\0" + bytes(pix[y * w * ch:(y + 1) * w * ch]) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2 if ch == 3 else 6, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def b64png(w, h, fn, ch=3):
    return base64.b64encode(png_encode(w, h, [fn(x, y, c) for y in range(h) for x in range(w) for c in range(ch)], ch)).decode()


def pixels(b64):
    return png_decode(base64.b64decode(b64))[3]


def max_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else 999


def post(s, path, body, raw=None, timeout=300):
    return s.request("POST", path, body, raw=raw, timeout=timeout)


def txt2img(s, **kw):
    st, j, text, _ = post(s, "/sdapi/v1/txt2img", kw)
    return st, j


def write_lora(path, scale, rank=2):
    """A diffusers/PEFT LoRA on two of micro-sd15's attention projections
    (float32 safetensors written by hand)."""
    tensors = {}
    for blk in ("down_blocks.0.attentions.0", "up_blocks.1.attentions.1"):
        base = f"unet.{blk}.transformer_blocks.0.attn1.to_q"
        tensors[base + ".lora_A.weight"] = ([rank, 32], [scale * ((i * 7 % 11) - 5) / 5 for i in range(rank * 32)])
        tensors[base + ".lora_B.weight"] = ([32, rank], [scale * ((i * 5 % 13) - 6) / 6 for i in range(32 * rank)])
    header, data = {}, b""
    for name, (shape, vals) in tensors.items():
        blob = struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def cli_image(tmp, prompt, seed, steps, sampler, w, h, cfg, karras=False, batch=1, negative="", lora_dir=None, extra=()):
    out = os.path.join(tmp, "cli.png")
    args = [BIN, "image", "gen", "-m", MODEL, "-p", prompt, "--negative", negative, "--seed", str(seed), "--steps",
            str(steps), "--sampler", sampler, "-W", str(w), "-H", str(h), "--cfg", str(cfg), "-t", "2", "-o", out,
            "--batch", str(batch)]
    if karras:
        args.append("--karras")
    if lora_dir:
        args += ["--lora-dir", lora_dir]
    args += list(extra)
    paths = subprocess.run(args, check=True, capture_output=True, text=True, timeout=300).stdout.split()
    return [png_decode(open(p, "rb").read()) for p in paths]


def sse_open(s, body, path="/api/image"):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=300)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return c, c.getresponse()


def test_models(s):
    st, j, _, _ = s.request("GET", "/sdapi/v1/sd-models")
    lines = ""
    for rel in MODEL_FILES:
        p = os.path.join(MODEL, rel)
        if os.path.exists(p):
            lines += hashlib.sha256(open(p, "rb").read()).hexdigest() + "  " + rel + "\n"
    sha = hashlib.sha256(lines.encode()).hexdigest()
    check("sd_models", st == 200 and len(j) == 1 and j[0]["sha256"] == sha and j[0]["hash"] == sha[:10] and
          j[0]["model_name"] == "micro-sd15" and j[0]["title"] == f"micro-sd15 [{sha[:10]}]", f"{st} {j} want {sha}")
    st, j, _, _ = s.request("GET", "/sdapi/v1/samplers")
    names = [x["name"] for x in j] if st == 200 else []
    check("samplers", names == ["Euler a", "Euler", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "LCM"], f"{st} {names}")
    st, j, _, _ = s.request("GET", "/sdapi/v1/schedulers")
    check("schedulers", st == 200 and [x["label"] for x in j] == ["Automatic", "Karras"], f"{st} {j}")
    st, j, _, _ = s.request("GET", "/sdapi/v1/options")
    check("options", st == 200 and j["sd_model_checkpoint"] == f"micro-sd15 [{sha[:10]}]", f"{st} {j}")
    st, j, _, _ = s.request("GET", "/sdapi/v1/progress?skip_current_image=true")
    check("progress_idle", st == 200 and j["progress"] == 0 and j["state"]["job_count"] == 0 and
          j["current_image"] is None, f"{st} {j}")


def test_equals_cli(s, tmp):
    cases = [("DDIM", "Automatic", "ddim", False, 7.5), ("Euler a", "Automatic", "euler_a", False, 5.0),
             ("DPM++ 2M", "Karras", "dpmpp_2m", True, 3.0), ("DPM++ 2M Karras", None, "dpmpp_2m", True, 3.0),
             ("LCM", "Automatic", "lcm", False, 1.0)]
    for name, sched, cli_name, karras, cfg in cases:
        body = {"prompt": "a lighthouse at dawn", "negative_prompt": "fog", "seed": 11, "steps": 4, "sampler_name": name,
                "cfg_scale": cfg, "width": 24, "height": 16}
        if sched:
            body["scheduler"] = sched
        st, j, _, _ = post(s, "/sdapi/v1/txt2img", body)
        if st != 200:
            check(f"equals_cli[{name}/{sched}]", False, f"{st} {j}")
            continue
        w, h, ch, pix, texts = png_decode(base64.b64decode(j["images"][0]))
        ref = cli_image(tmp, "a lighthouse at dawn", 11, 4, cli_name, 24, 16, cfg, karras, negative="fog")[0]
        info = json.loads(j["info"])
        # a legacy name is that sampler with the Karras schedule, as the web UI reads it
        labels = ("DPM++ 2M", "Karras") if name == "DPM++ 2M Karras" else (name, sched)
        check(f"equals_cli[{name}/{sched}]", (w, h, ch) == (24, 16, 3) and pix == ref[3] and info["all_seeds"] == [11] and
              (info["sampler_name"], info["scheduler"]) == labels and
              "Seed: 11" in texts.get("parameters", "") and info["infotexts"][0] == texts["parameters"],
              f"{(w, h, ch)} same pixels {pix == ref[3]}; {texts} {info}")
    # a batch: consecutive seeds, as the CLI's --batch
    st, j, _, _ = post(s, "/sdapi/v1/txt2img", {"prompt": "two cats", "seed": 40, "steps": 3, "sampler_name": "Euler",
                                               "width": 16, "height": 16, "batch_size": 2, "n_iter": 2})
    refs = cli_image(tmp, "two cats", 40, 3, "euler", 16, 16, 7.0, batch=4)
    pix = [png_decode(base64.b64decode(x))[3] for x in j["images"]] if st == 200 else []
    info = json.loads(j["info"]) if st == 200 else {}
    check("batch_equals_cli", pix == [r[3] for r in refs] and info["all_seeds"] == [40, 41, 42, 43] and
          j["parameters"]["batch_size"] == 2 and j["parameters"]["n_iter"] == 2, f"{st} {info.get('all_seeds')}")
    # a random seed: reported, and the image is that seed's
    st, j, _, _ = post(s, "/sdapi/v1/txt2img", {"prompt": "a red fox", "seed": -1, "steps": 2, "width": 16, "height": 16,
                                               "sampler_name": "DDIM"})
    info = json.loads(j["info"]) if st == 200 else {}
    seed = info.get("seed", -1)
    ok_pix = st == 200 and png_decode(base64.b64decode(j["images"][0]))[3] == \
        cli_image(tmp, "a red fox", seed, 2, "ddim", 16, 16, 7.0)[0][3]
    check("random_seed_reported", st == 200 and 0 <= seed < 2**32 and info["all_seeds"] == [seed] and
          j["parameters"]["seed"] == -1 and ok_pix and info["cached"] == [False], f"{st} {info}")
    st2, j2, _, _ = post(s, "/sdapi/v1/txt2img", {"prompt": "a red fox", "seed": -1, "steps": 2, "width": 16, "height": 16,
                                                 "sampler_name": "DDIM"})
    info2 = json.loads(j2["info"]) if st2 == 200 else {}
    check("random_seeds_differ_not_cached", st2 == 200 and info2["seed"] != seed and info2["cached"] == [False], f"{info2}")


def test_bad_requests(s):
    ok_body = {"prompt": "x", "steps": 2, "width": 16, "height": 16}
    cases = [
        (None, "{\"prompt\": ", "invalid JSON at line 1"),
        (None, "[1, 2]", "must be a JSON object, got an array"),
        ({"steps": "20"}, None, "\"steps\" must be an integer, got a string"),
        ({"steps": 2.5}, None, "\"steps\" must be an integer, got a fraction"),
        ({"steps": 0}, None, "\"steps\" must be 1..150, got 0"),
        ({"steps": 151}, None, "\"steps\" must be 1..150, got 151"),
        ({"width": 30}, None, "\"width\" must be a multiple of 4 for this model, got 30"),
        ({"height": 4096}, None, "\"height\" must be 1..2048, got 4096"),
        ({"cfg_scale": "7"}, None, "\"cfg_scale\" must be a number, got a string"),
        ({"cfg_scale": 101}, None, "\"cfg_scale\" must be 0..100, got 101"),
        ({"sampler_name": "Heun"}, None, "\"sampler_name\": unknown sampler \"Heun\" (known: \"Euler a\""),
        ({"sampler_name": 3}, None, "\"sampler_name\" must be a string, got a number"),
        ({"scheduler": "Exponential"}, None, "\"scheduler\": unknown schedule \"Exponential\""),
        ({"sampler_name": "DDIM", "scheduler": "Karras"}, None, "Karras works with Euler, Euler a and DPM++ 2M, not DDIM"),
        ({"seed": -2}, None, "\"seed\" must be -1..9223372036854775807, got -2"),
        ({"prompt": ["a"]}, None, "\"prompt\" must be a string, got an array"),
        ({"batch_size": 8, "n_iter": 3}, None, "\"batch_size\" × \"n_iter\" must be at most 16 images, got 24"),
        ({"restore_faces": True}, None, "\"restore_faces\": face restoration is not supported"),
        ({"enable_hr": "yes"}, None, "\"enable_hr\" must be true or false, got a string"),
        ({"subseed_strength": 1.5}, None, "\"subseed_strength\" must be 0..1, got 1.5"),
        ({"override_settings": {"CLIP_stop_at_last_layers": 9}}, None,
         "override_settings.\"CLIP_stop_at_last_layers\" must be 1..2, got 9"),
        ({"override_settings": 5}, None, "\"override_settings\" must be an object, got a number"),
    ]
    for extra, raw, frag in cases:
        body = dict(ok_body, **extra) if extra is not None else None
        st, j, text, _ = post(s, "/sdapi/v1/txt2img", body, raw=raw)
        check(f"bad[{(raw or json.dumps(extra))[:40]}]", st == 400 and j and j.get("error") == "invalid_request_error" and
              frag in j.get("detail", ""), f"{st} {text[:300]}")
    # harmless unknown fields are ignored, as the web UI does
    st, j = txt2img(s, **dict(ok_body, styles=[], do_not_save_grid=True, eta=0.3, alwayson_scripts={}, tiling=False))
    check("unknown_fields_ignored", st == 200 and len(j["images"]) == 1, f"{st} {j}")
    # the native route refuses before streaming, in the server's error shape
    st, j, text, _ = post(s, "/api/image", dict(ok_body, steps=-1))
    check("native_bad_400", st == 400 and "\"steps\" must be 1..150, got -1" in j["error"]["message"], f"{st} {text[:200]}")
    st, j, text, _ = post(s, "/api/image", None, raw="nope")
    check("native_bad_json", st == 400 and "invalid JSON" in j["error"]["message"], f"{st} {text[:200]}")
    st, j, _, _ = s.request("GET", "/sdapi/v1/txt2img")
    check("method_405", st == 405, f"{st}")
    st, j = txt2img(s, **ok_body)
    check("serves_after_bad_requests", st == 200 and len(j["images"]) == 1, f"{st}")


def test_cache_memory(s):
    body = {"prompt": "a cached owl", "seed": 5, "steps": 3, "width": 16, "height": 16, "sampler_name": "Euler a"}
    st1, j1 = txt2img(s, **body)
    st2, j2 = txt2img(s, **body)
    i1 = json.loads(j1["info"]) if st1 == 200 else {}
    i2 = json.loads(j2["info"]) if st2 == 200 else {}
    check("cache_hit_identical", st1 == st2 == 200 and i1["cached"] == [False] and i2["cached"] == [True] and
          j1["images"] == j2["images"], f"{i1.get('cached')} {i2.get('cached')}")
    # every parameter that changes the pixels is in the key
    for k, v in [("cfg_scale", 6.5), ("seed", 6), ("negative_prompt", "rain"), ("steps", 4), ("width", 20),
                 ("sampler_name", "Euler"), ("override_settings", {"CLIP_stop_at_last_layers": 2}), ("prompt", "a cached owl ")]:
        st, j = txt2img(s, **dict(body, **{k: v}))
        info = json.loads(j["info"]) if st == 200 else {}
        check(f"cache_miss[{k}]", st == 200 and info["cached"] == [False] and j["images"] != j1["images"], f"{st} {info}")
    # a batch overlapping cached seeds: only the new ones are generated
    st, j = txt2img(s, **dict(body, seed=4, batch_size=2))
    info = json.loads(j["info"]) if st == 200 else {}
    check("cache_partial_batch", st == 200 and info["cached"] == [False, True] and j["images"][1] == j1["images"][0],
          f"{st} {info}")
    # the native stream says so too, and gives the same file
    c, r = sse_open(s, body)
    ev = list(sse_blocks(r)) if r.status == 200 else []
    c.close()
    imgs = [e[1] for e in ev if e[0] == "image"]
    check("native_cached", [e[0] for e in ev] == ["image", "done"] and imgs[0]["cached"] and imgs[0]["png"] == j1["images"][0]
          and ev[-1][1]["cached"] == 1, f"{[e[0] for e in ev]}")


def test_native_stream(s):
    body = {"prompt": "a small boat", "seed": 21, "steps": 4, "width": 16, "height": 12, "sampler_name": "DDIM",
            "preview_every": 2}
    c, r = sse_open(s, body)
    ev = list(sse_blocks(r)) if r.status == 200 else []
    c.close()
    names = [e[0] for e in ev]
    check("native_events", names == ["queued", "start", "step", "step", "step", "step", "image", "done"], f"{r.status} {names}")
    steps = [e[1] for e in ev if e[0] == "step"]
    check("native_steps", [x["step"] for x in steps] == [1, 2, 3, 4] and all(x["steps"] == 4 for x in steps) and
          all(x["seconds"] >= 0 for x in steps), f"{steps}")
    previews = [png_decode(base64.b64decode(x["preview"])) for x in steps if "preview" in x]
    check("native_previews", [x["step"] for x in steps if "preview" in x] == [2, 4] and
          all((p[0], p[1], p[2]) == (16, 12, 3) for p in previews), f"{[(p[0], p[1]) for p in previews]}")
    img = [e[1] for e in ev if e[0] == "image"]
    if img:
        w, h, ch, pix, texts = png_decode(base64.b64decode(img[0]["png"]))
        st, j = txt2img(s, **{k: v for k, v in body.items() if k != "preview_every"})
        check("native_equals_sdapi", (w, h) == (16, 12) and img[0]["seed"] == 21 and not img[0]["cached"] and
              st == 200 and j["images"][0] == img[0]["png"] and texts["parameters"] == img[0]["parameters"],
              f"{st} {img[0]['parameters']}")
    else:
        check("native_equals_sdapi", False, "no image event")
    check("native_done", ev and ev[-1][1]["images"] == 1 and ev[-1][1]["interrupted"] is False, f"{ev[-1:]}")


def test_img2img_equals_cli(s, tmp):
    wide = b64png(40, 24, lambda x, y, c: (x * 9 + y * 4 + c * 60) % 256)
    blob = b64png(40, 24, lambda x, y, c: 255 if (x - 22) ** 2 + (y - 12) ** 2 < 70 else 0)
    for name, data in (("init.png", wide), ("mask.png", blob)):
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(base64.b64decode(data))
    init, mask = os.path.join(tmp, "init.png"), os.path.join(tmp, "mask.png")
    base = {"prompt": "a quay", "seed": 14, "steps": 5, "width": 16, "height": 16, "sampler_name": "Euler a",
            "cfg_scale": 6.0, "init_images": [wide]}
    cases = [("crop", {"resize_mode": 1, "denoising_strength": 0.6}, ["--init", init, "--resize", "crop", "--strength", "0.6"]),
             ("just", {"resize_mode": 0, "denoising_strength": 0.4}, ["--init", init, "--resize", "just", "--strength", "0.4"]),
             ("fill_mask", {"resize_mode": 2, "denoising_strength": 0.8, "mask": blob, "mask_blur": 2},
              ["--init", init, "--resize", "fill", "--strength", "0.8", "--mask", mask, "--mask-blur", "2"]),
             ("variation", {"init_images": None, "subseed": 3, "subseed_strength": 0.4},
              ["--subseed", "3", "--subseed-strength", "0.4"])]
    for name, fields, args in cases:
        body = dict(base, **fields)
        route = "/sdapi/v1/img2img"
        if body["init_images"] is None:
            del body["init_images"]
            route = "/sdapi/v1/txt2img"
        st, j, text, _ = post(s, route, body)
        ref = cli_image(tmp, "a quay", 14, 5, "euler_a", 16, 16, 6.0, extra=args)[0]
        api_text = png_decode(base64.b64decode(j["images"][0]))[4]["parameters"] if st == 200 else ""
        fields = [f for f in ref[4]["parameters"].split(", ") if f.split(":")[0] in
                  ("Denoising strength", "Mask blur", "Variation seed", "Variation seed strength")]
        check(f"equals_cli[{name}]", st == 200 and pixels(j["images"][0]) == ref[3] and fields and
              all(f in api_text for f in fields), f"{st} {text[:200] if st != 200 else ''} {api_text!r} vs {ref[4]}")


def test_img2img(s):
    init = b64png(16, 16, lambda x, y, c: (x * 16 + y * 5 + c * 70) % 256)
    base = {"prompt": "a harbour", "seed": 31, "steps": 4, "width": 16, "height": 16, "sampler_name": "DDIM",
            "init_images": [init], "mask_blur": 0}
    img = lambda **kw: post(s, "/sdapi/v1/img2img", dict(base, **kw))  # noqa: E731
    # strength 1 starts from pure noise: the txt2img image
    st, j, text, _ = img(denoising_strength=1.0)
    st2, t = txt2img(s, **{k: v for k, v in base.items() if k not in ("init_images", "mask_blur")})
    info = json.loads(j["info"]) if st == 200 else {}
    check("img2img_strength1_is_txt2img", st == 200 and st2 == 200 and pixels(j["images"][0]) == pixels(t["images"][0]) and
          info["denoising_strength"] == 1.0 and "Denoising strength: 1," in info["infotexts"][0] and
          j["parameters"]["init_images"] is None, f"{st} {text[:300]}")
    # strength 0 gives the picture through the VAE; a black mask (nothing repainted)
    # gives it too whatever the strength, and so does an inverted white mask
    st, j0, text, _ = img(denoising_strength=0.0)
    black = b64png(16, 16, lambda x, y, c: 0)
    white = b64png(16, 16, lambda x, y, c: 255)
    st1, j1, _, _ = img(denoising_strength=0.75, mask=black)
    st2, j2, _, _ = img(denoising_strength=0.75, mask=white, inpainting_mask_invert=1)
    p0 = pixels(j0["images"][0]) if st == 200 else b""
    check("img2img_strength0_differs_from_noise", st == 200 and p0 != pixels(t["images"][0]), f"{st} {text[:200]}")
    check("inpaint_black_mask_keeps", st1 == 200 and max_diff(pixels(j1["images"][0]), p0) <= 1,
          f"{st1} {max_diff(pixels(j1['images'][0]), p0) if st1 == 200 else j1}")
    check("inpaint_invert", st2 == 200 and max_diff(pixels(j2["images"][0]), p0) <= 1 and
          json.loads(j2["info"])["cached"] == [False], f"{st2}")
    # a white mask repaints everything: at strength 1 the txt2img image
    st3, j3, _, _ = img(denoising_strength=1.0, mask=white)
    check("inpaint_white_mask_repaints", st3 == 200 and pixels(j3["images"][0]) == pixels(t["images"][0]), f"{st3}")
    # a half mask repaints only part of it (kept latents are exact, but the VAE's
    # attention spreads every latent over all pixels, so compare whole images)
    half = b64png(16, 16, lambda x, y, c: 255 if x >= 8 else 0)
    st4, j4, _, _ = img(denoising_strength=1.0, mask=half)
    p4 = pixels(j4["images"][0]) if st4 == 200 else b""
    check("inpaint_half_mask", st4 == 200 and p4 not in (p0, pixels(t["images"][0])), f"{st4}")
    # resize modes: a wide picture is stretched, cropped or filled differently
    wide = b64png(32, 16, lambda x, y, c: (x * 8 + y * 3 + c * 50) % 256)
    outs = [img(init_images=[wide], denoising_strength=0.0, resize_mode=m) for m in (0, 1, 2)]
    check("img2img_resize_modes", all(o[0] == 200 for o in outs) and len({o[1]["images"][0] for o in outs}) == 3,
          f"{[o[0] for o in outs]}")
    # a data: URL is accepted; the cache knows the picture
    st5, j5, _, _ = img(init_images=["data:image/png;base64," + init], denoising_strength=0.0)
    check("img2img_data_url_cached", st5 == 200 and json.loads(j5["info"])["cached"] == [True] and
          j5["images"] == j0["images"], f"{st5}")
    other = b64png(16, 16, lambda x, y, c: (x * 16 + y * 5 + c * 70 + 1) % 256)
    st6, j6, _, _ = img(init_images=[other], denoising_strength=0.0)
    check("img2img_other_picture_miss", st6 == 200 and json.loads(j6["info"])["cached"] == [False], f"{st6}")
    # the native route takes the same fields
    c, r = sse_open(s, dict(base, denoising_strength=0.5, seed=32))
    ev = list(sse_blocks(r)) if r.status == 200 else []
    c.close()
    names = [e[0] for e in ev]
    check("img2img_native", r.status == 200 and names[:2] == ["queued", "start"] and names.count("step") == 2 and
          names[-2:] == ["image", "done"] and "Denoising strength: 0.5" in ev[-2][1]["parameters"], f"{names}")
    for extra, frag in [({"init_images": None}, "\"init_images\" must be an array of one base64 PNG image, got nothing"),
                        ({"init_images": [init, init]}, "must be an array of one base64 PNG image, got another count"),
                        ({"init_images": ["ab!c"]}, "\"init_images\"[0]: not a base64 PNG image: invalid base64: byte 0x21"),
                        ({"init_images": [base64.b64encode(b"GIF89a....").decode()]}, "\"init_images\"[0]: not a base64 PNG"),
                        ({"init_images": [init[:40]]}, "\"init_images\"[0]: not a base64 PNG image"),
                        ({"init_images": [7]}, "\"init_images\"[0] must be a base64 PNG string, got a number"),
                        ({"mask": "%%%"}, "\"mask\": not a base64 PNG image: invalid base64"),
                        ({"denoising_strength": 1.5}, "\"denoising_strength\" must be 0..1, got 1.5"),
                        ({"resize_mode": 3}, "\"resize_mode\": 3 (latent upscale) is not supported"),
                        ({"inpainting_mask_invert": 2}, "\"inpainting_mask_invert\" must be 0..1, got 2")]:
        body = dict(base, **extra)
        if extra.get("init_images", 0) is None:
            del body["init_images"]
        st, j, text, _ = post(s, "/sdapi/v1/img2img", body)
        check(f"img2img_bad[{json.dumps(extra)[:40]}]", st == 400 and frag in j.get("detail", ""), f"{st} {text[:300]}")


def test_variations(s):
    base = {"prompt": "a kite", "seed": 50, "steps": 3, "width": 16, "height": 16, "sampler_name": "DDIM"}
    st, j = txt2img(s, **base)
    # strength 0: the subseed changes nothing, not even the cache key
    st1, j1 = txt2img(s, **dict(base, subseed=9, subseed_strength=0))
    check("variation_zero_ignored", st == st1 == 200 and json.loads(j1["info"])["cached"] == [True] and
          j1["images"] == j["images"], f"{st1}")
    # strength 1: the subseed's noise, i.e. that seed's image (DDIM adds no noise of its own)
    st2, j2 = txt2img(s, **dict(base, subseed=77, subseed_strength=1.0))
    st3, j3 = txt2img(s, **dict(base, seed=77))
    info = json.loads(j2["info"]) if st2 == 200 else {}
    check("variation_full_is_subseed", st2 == st3 == 200 and pixels(j2["images"][0]) == pixels(j3["images"][0]) and
          info["all_subseeds"] == [77] and "Variation seed: 77, Variation seed strength: 1" in info["infotexts"][0], f"{info}")
    st4, j4 = txt2img(s, **dict(base, subseed=77, subseed_strength=0.5, batch_size=2))
    info = json.loads(j4["info"]) if st4 == 200 else {}
    check("variation_half", st4 == 200 and info["all_subseeds"] == [77, 78] and
          pixels(j4["images"][0]) not in (pixels(j["images"][0]), pixels(j3["images"][0])), f"{info}")


def test_loras(s, tmp, lora_dir):
    body = {"prompt": "a fox <lora:style:0.8>", "seed": 12, "steps": 3, "width": 16, "height": 16, "sampler_name": "DDIM"}
    st, j = txt2img(s, **body)
    st0, j0 = txt2img(s, **dict(body, prompt="a fox"))
    ref = cli_image(tmp, "a fox <lora:style:0.8>", 12, 3, "ddim", 16, 16, 7.0, lora_dir=lora_dir)[0]
    check("lora_equals_cli", st == st0 == 200 and pixels(j["images"][0]) == ref[3] and
          pixels(j0["images"][0]) != ref[3], f"{st} {st0} {j if st != 200 else ''}")
    st1, j1 = txt2img(s, **body)
    check("lora_cached", st1 == 200 and json.loads(j1["info"])["cached"] == [True] and j1["images"] == j["images"], f"{st1}")
    # a changed file (size or time) is another key
    time.sleep(0.01)
    write_lora(os.path.join(lora_dir, "style.safetensors"), 0.5, rank=3)
    st2, j2 = txt2img(s, **body)
    check("lora_changed_file_misses", st2 == 200 and json.loads(j2["info"])["cached"] == [False] and
          j2["images"] != j["images"], f"{st2}")
    st3, j3, text, _ = post(s, "/sdapi/v1/txt2img", dict(body, prompt="a fox <lora:missing:1>"))
    check("lora_missing_400", st3 == 400 and "<lora:missing>: no file missing.safetensors in the LoRA folder" in j3["detail"],
          f"{st3} {text[:200]}")


def wait_running(s, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, j, _, _ = s.request("GET", "/sdapi/v1/progress?skip_current_image=true")
        if st == 200 and j["state"]["job_count"] >= 1 and j["state"]["sampling_step"] >= 1:
            return j
        time.sleep(0.05)
    return None


LONG = {"prompt": "a long job", "steps": 150, "width": 64, "height": 64, "sampler_name": "Euler"}


def test_progress_interrupt_text(s, text_model):
    # a long job, streamed; watch it through /sdapi/v1/progress
    c, r = sse_open(s, dict(LONG, seed=1))
    it = sse_blocks(r)
    first = [next(it)[0] for _ in range(2)]
    j = wait_running(s)
    check("progress_running", first == ["queued", "start"] and j and 0 < j["progress"] < 1 and
          j["state"]["sampling_steps"] == 150 and j["state"]["job_count"] == 1 and j["state"]["job"] == "txt2img" and
          j["eta_relative"] > 0, f"{first} {j}")
    # a preview is rendered on demand: a later poll gets it
    img = None
    for _ in range(100):
        st, j, _, _ = s.request("GET", "/sdapi/v1/progress")
        if j["current_image"]:
            img = png_decode(base64.b64decode(j["current_image"]))
            break
        time.sleep(0.05)
    check("progress_preview", img and img[:3] == (64, 64, 3), f"{img and img[:3]}")
    # text is served meanwhile
    t0 = time.time()
    st, j, _, _ = s.post("/v1/completions", {"prompt": "Once upon", "max_tokens": 8, "temperature": 0})
    dt = time.time() - t0
    st2, p, _, _ = s.request("GET", "/sdapi/v1/progress?skip_current_image=true")
    check("text_while_image", st == 200 and j["usage"]["completion_tokens"] == 8 and p["state"]["job_count"] == 1,
          f"{st} {j} after {dt:.1f}s; image job running: {p['state']}")
    # interrupt: the stream ends with done, interrupted, no image
    st, j, _, _ = post(s, "/sdapi/v1/interrupt", None)
    rest = list(it)
    c.close()
    names = [e[0] for e in rest]
    steps = [e[1]["step"] for e in rest if e[0] == "step"]
    check("interrupt_native", st == 200 and j["interrupted"] and names[-1] == "done" and rest[-1][1]["interrupted"] and
          "image" not in names and (not steps or steps[-1] < 150), f"{st} {names[-3:]} {steps[-1:]}")
    st, j, _, _ = s.request("GET", "/sdapi/v1/progress?skip_current_image=true")
    check("progress_idle_after", st == 200 and j["state"]["job_count"] == 0, f"{j}")
    # the web UI's route: an interrupted batch answers the images it finished
    # (image 0 comes from the cache, image 1 is stopped)
    batch = dict(LONG, seed=2, width=16, height=16)
    st0, j0 = txt2img(s, **batch)
    res = {}
    th = threading.Thread(target=lambda: res.update(r=txt2img(s, **dict(batch, batch_size=3))))
    th.start()
    wait_running(s)
    post(s, "/sdapi/v1/interrupt", None)
    th.join(120)
    st, j = res.get("r", (None, None))
    info = json.loads(j["info"]) if st == 200 else {}
    check("interrupt_sdapi", st0 == 200 and st == 200 and info.get("interrupted") is True and info["cached"] == [True] and
          j["images"] == j0["images"] and info["all_seeds"] == [2], f"{st} {info}")


def wait_queued(s, n, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, j, _, _ = s.request("GET", "/sdapi/v1/progress?skip_current_image=true")
        if st == 200 and j["state"]["queued"] == n:
            return True
        time.sleep(0.05)
    return False


def test_queue_bound(tmp, text_model):
    s = Server(text_model, "--image-model", MODEL, "--image-queue", "1", "--image-threads", "1")
    try:
        a, ra = sse_open(s, dict(LONG, seed=3))
        ita = sse_blocks(ra)
        [next(ita) for _ in range(2)]  # queued, start
        b, rb = sse_open(s, dict(LONG, seed=4))
        itb = sse_blocks(rb)
        qb = next(itb)
        st, j, text, _ = post(s, "/sdapi/v1/txt2img", dict(LONG, seed=5))
        check("queue_position", qb[0] == "queued" and qb[1] == {"position": 1, "running": True}, f"{qb}")
        check("queue_full_503", st == 503 and j["error"] == "unavailable" and
              "the image queue is full: 1 request is waiting (--image-queue 1)" in j["detail"], f"{st} {text}")
        st, j, text, _ = post(s, "/api/image", dict(LONG, seed=5))
        check("queue_full_503_native", st == 503 and "queue is full" in j["error"]["message"], f"{st} {text}")
        # a waiting client that leaves frees its place
        b.close()
        check("queue_leaver_removed", wait_queued(s, 0))
        c, rc = sse_open(s, dict(LONG, seed=6))
        itc = sse_blocks(rc)
        qc = next(itc)
        check("queue_leaver_frees", rc.status == 200 and qc == ("queued", {"position": 1, "running": True}), f"{rc.status} {qc}")
        # the running one's client leaves: it stops and the next starts
        a.close()
        nxt = next(itc)
        check("queue_next_starts", nxt[0] == "start", f"{nxt}")
        c.close()
    finally:
        code = s.stop()
    check("queue_server_stops", code == 0, f"exit {code}")


def test_folder_cache(tmp, text_model):
    cache = os.path.join(tmp, "cache")
    body = {"prompt": "a kept heron", "seed": 8, "steps": 3, "width": 16, "height": 16, "sampler_name": "DDIM"}
    s = Server(text_model, "--image-model", MODEL, "--image-cache", cache)
    try:
        st1, j1 = txt2img(s, **body)
    finally:
        s.stop()
    files = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    check("folder_cache_file", st1 == 200 and len(files) == 1 and files[0].endswith(".png") and len(files[0]) == 68 and
          open(os.path.join(cache, files[0]), "rb").read() == base64.b64decode(j1["images"][0]), f"{files}")
    s = Server(text_model, "--image-model", MODEL, "--image-cache", cache)
    try:
        st2, j2 = txt2img(s, **body)
        info = json.loads(j2["info"]) if st2 == 200 else {}
        check("folder_cache_restart_hit", st2 == 200 and info["cached"] == [True] and j2["images"] == j1["images"],
              f"{st2} {info}")
    finally:
        s.stop()
    bad = os.path.join(tmp, "not-a-folder")
    open(bad, "w").close()
    r = subprocess.run([BIN, "serve", "-m", text_model, "--port", "0", "--image-model", MODEL, "--image-cache", bad],
                       capture_output=True, text=True, timeout=60)
    check("folder_cache_refused", r.returncode == 1 and f"image cache {bad}: not a folder" in r.stderr, r.stderr)
    r = subprocess.run([BIN, "serve", "-m", text_model, "--port", "0", "--image-model", os.path.join(tmp, "nothing")],
                       capture_output=True, text=True, timeout=60)
    check("missing_model_refused", r.returncode == 1 and "--image-model" in r.stderr and "nothing" in r.stderr, r.stderr)
    taef2 = os.path.join(SHARED, "diffusion", "taef2", "taef2_decoder.pth")
    if os.path.exists(taef2):
        r = subprocess.run([BIN, "serve", "-m", text_model, "--port", "0", "--image-model", MODEL, "--image-taesd", taef2],
                           capture_output=True, text=True, timeout=60)
        check("taesd_channels_refused", r.returncode == 1 and "32 latent channels, the model has 4" in r.stderr, r.stderr)
    else:
        skip("taesd_channels_refused", f"{taef2} is absent")
    r = subprocess.run([BIN, "serve", "-m", text_model, "--port", "0", "--image-model", MODEL, "--image-queue", "-1"],
                       capture_output=True, text=True, timeout=60)
    check("negative_queue_refused", r.returncode == 1 and "must be positive" in r.stderr, r.stderr)


def test_oversize(text_model):
    s = Server(text_model, "--image-model", MODEL, "--max-body-kb", "16")
    try:
        st, j, text, _ = post(s, "/sdapi/v1/txt2img", {"prompt": "x" * 40000})
        check("oversize_413", st == 413, f"{st} {text[:200]}")
        st, j = txt2img(s, prompt="x", steps=1, width=16, height=16)
        check("serves_after_oversize", st == 200, f"{st}")
        st, j, text, _ = post(s, "/sdapi/v1/txt2img", {"prompt": "x <lora:style>", "steps": 1, "width": 16, "height": 16})
        check("lora_without_folder_400", st == 400 and
              "\"prompt\" has <lora:style> but this server has no LoRA folder (--image-lora-dir)" in j["detail"], f"{st} {text}")
    finally:
        s.stop()


def main():
    if not os.path.isdir(MODEL):
        skip("image_api", f"{MODEL} is absent")
        print(f"test_image_api: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
        return 0
    tmp = tempfile.mkdtemp(prefix="sim-image-api-")
    text_model = os.path.join(tmp, "t.gguf")
    subprocess.run([BIN, "synth", "-o", text_model, "--vocab", "512", "--dim", "64", "--layers", "2", "--seed", "1"],
                   check=True, capture_output=True)
    lora_dir = os.path.join(tmp, "loras")
    os.mkdir(lora_dir)
    write_lora(os.path.join(lora_dir, "style.safetensors"), 1.0)
    s = Server(text_model, "--image-model", MODEL, "--image-threads", "1", "--image-lora-dir", lora_dir)
    try:
        test_models(s)
        test_equals_cli(s, tmp)
        test_bad_requests(s)
        test_cache_memory(s)
        test_native_stream(s)
        test_img2img(s)
        test_img2img_equals_cli(s, tmp)
        test_variations(s)
        test_loras(s, tmp, lora_dir)
        test_progress_interrupt_text(s, text_model)
    finally:
        code = s.stop()
    check("server_stops", code == 0, f"exit {code}")
    test_queue_bound(tmp, text_model)
    test_folder_cache(tmp, text_model)
    test_oversize(text_model)
    subprocess.run(["rm", "-rf", tmp])
    print(f"test_image_api: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

#!/bin/sh
# CLI tests for LoRAs in `simularity image gen` (--lora-dir, <lora:NAME:W>
# tags) on micro-sd15: Python writes a kohya LoRA (U-Net and text encoder
# modules, alpha != rank) and, independently of our code, a copy of the
# model with it merged (W + w·alpha/rank·up·down in double precision); the
# tagged generation's latent must match the copy's, and without the tag the
# original latent comes back byte for byte.
# Usage: sh tests/cli/test_image_lora.sh   (SIM_BIN: the binary, default ./simularity)
. tests/cli/harness.inc

G="$SHARED/diffusion/micro-sd15"
if [ ! -f "$G/model_index.json" ]; then
    skip lora "$G not found"
elif ! command -v python3 >/dev/null; then
    skip lora "python3 not found"
else
G=$(cd "$G" && pwd)
python3 - "$G" "$T" <<'PY'
import json, os, random, struct, sys
G, T = sys.argv[1], sys.argv[2]
def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    out = {}
    for k, v in h.items():
        assert v['dtype'] == 'F32'
        s, e = v['data_offsets']
        out[k] = (v['shape'], list(struct.unpack('<%df' % ((e - s) // 4), b[8 + n + s:8 + n + e])))
    return out
def write(path, ts):
    h, data = {}, b''
    for k, (shape, vals) in ts.items():
        d = struct.pack('<%df' % len(vals), *vals)
        h[k] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [len(data), len(data) + len(d)]}
        data += d
    j = json.dumps(h).encode()
    j += b' ' * (-len(j) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(j)) + j + data)
random.seed(3)
w = 0.6
mods = [  # kohya key, part, target, rank, alpha
    ('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', 'unet', 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight', 2, 1.0),
    ('lora_unet_mid_block_resnets_0_conv1', 'unet', 'mid_block.resnets.0.conv1.weight', 3, 6.0),
    ('lora_te_text_model_encoder_layers_1_self_attn_v_proj', 'te', 'text_model.encoder.layers.1.self_attn.v_proj.weight', 2, 4.0),
]
files = {'unet': G + '/unet/diffusion_pytorch_model.safetensors', 'te': G + '/text_encoder/model.safetensors'}
orig = {p: read(f) for p, f in files.items()}
lora = {}
for key, part, target, r, alpha in mods:
    shape, W = orig[part][target]
    out, K = shape[0], len(W) // shape[0]
    down = [random.uniform(-.2, .2) for _ in range(r * K)]
    up = [random.uniform(-.2, .2) for _ in range(out * r)]
    lora[key + '.lora_down.weight'] = ([r] + shape[1:], down)
    lora[key + '.lora_up.weight'] = ([out, r] + [1] * (len(shape) - 2), up)
    lora[key + '.alpha'] = ([], [alpha])
    s = w * alpha / r
    orig[part][target] = (shape, [W[o * K + k] + s * sum(up[o * r + j] * down[j * K + k] for j in range(r)) for o in range(out) for k in range(K)])
os.makedirs(T + '/loras')
write(T + '/loras/style.safetensors', lora)
M = T + '/merged'
for sub in ('unet', 'text_encoder'):
    os.makedirs(M + '/' + sub)
    os.symlink(G + '/' + sub + '/config.json', M + '/' + sub + '/config.json')
for name in ('model_index.json', 'tokenizer', 'vae'):
    os.symlink(G + '/' + name, M + '/' + name)
write(M + '/unet/diffusion_pytorch_model.safetensors', orig['unet'])
write(M + '/text_encoder/model.safetensors', orig['te'])
PY
gen() { # gen MODEL PROMPT LATENT [options]
    m=$1 p=$2 l=$3; shift 3
    $BIN image gen -m "$m" -p "$p" -W 16 -H 16 --steps 3 --seed 4 -t 2 --save-latent "$l" -o "$T/img.png" "$@" >"$T/out" 2>&1
}
gen "$G" "a cat" "$T/base.f32" && ok gen_base || bad gen_base "$(tail -1 "$T/out")"
gen "$G" "a cat<lora:style:0.6>" "$T/lora.f32" --lora-dir "$T/loras" && ok gen_lora || bad gen_lora "$(tail -1 "$T/out")"
gen "$T/merged" "a cat" "$T/merged.f32" && ok gen_merged || bad gen_merged "$(tail -1 "$T/out")"
python3 - "$T" <<'PY' && ok lora_equals_merged_copy || bad lora_equals_merged_copy
import struct, sys
T = sys.argv[1]
def f(n):
    b = open(T + '/' + n + '.f32', 'rb').read()
    return struct.unpack('<%df' % (len(b) // 4), b)
base, lora, merged = f('base'), f('lora'), f('merged')
peak = max(abs(v) for v in merged)
d = max(abs(a - b) for a, b in zip(lora, merged))
change = max(abs(a - b) for a, b in zip(lora, base))
print('  tag vs merged copy: max |d| %.3g (%.2g of max |latent| %.3g); the LoRA moves the latent by %.3g' % (d, d / peak, peak, change))
sys.exit(0 if d <= 1e-4 * peak and change > 0.01 * peak else 1)
PY
gen "$G" "a cat" "$T/again.f32" --lora-dir "$T/loras" && cmp -s "$T/base.f32" "$T/again.f32" && ok no_tag_is_original || bad no_tag_is_original
expect_error lora_missing "loras/nope.safetensors: cannot open" $BIN image gen -m "$G" -p "x <lora:nope>" -W 16 -H 16 --steps 1 --lora-dir "$T/loras" -o "$T/x.png"
expect_error lora_no_dir "the prompt has <lora:style> but no LoRA folder is set" $BIN image gen -m "$G" -p "x <lora:style>" -W 16 -H 16 --steps 1 -o "$T/x.png"
expect_error lora_bad_weight "weight 'lots' is not a number" $BIN image gen -m "$G" -p "x <lora:style:lots>" -W 16 -H 16 --steps 1 --lora-dir "$T/loras" -o "$T/x.png"
expect_error lora_path_name "bad name '../loras/style'" $BIN image gen -m "$G" -p "x <lora:../loras/style>" -W 16 -H 16 --steps 1 --lora-dir "$T/loras" -o "$T/x.png"
fi

echo "test_image_lora.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]

#!/bin/sh
# make bench: the benchmark of the inference core. Builds random-weight
# 1.1B Llama models (dim 2048, 22 layers, 32 heads / 4 KV heads, ffn 5632,
# vocab 32000: TinyLlama's shape) once into build/bench/, then measures
# prompt processing (pp512) and generation (tg128) on 2 threads, with the
# machine's read bandwidth measured in the same run.
# Environment: BENCH_TYPES (default "q4_0 q8_0 q4_k_m"), BENCH_ARGS (extra
# arguments for `simularity bench`, e.g. "-r 5").
set -e
BIN=${SIM_BIN:-./simularity}
DIR=build/bench
mkdir -p $DIR
TYPES=${BENCH_TYPES:-"q4_0 q8_0 q4_k_m"}
for ty in $TYPES; do
    m=$DIR/llama-1.1b.$ty.gguf
    if [ ! -f $m ]; then
        echo "writing $m ..."
        $BIN synth -o $m.tmp --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 --vocab 32000 \
            --ctx 2048 --type $ty -t 2
        mv $m.tmp $m
    fi
done
: >$DIR/results.jsonl
for ty in $TYPES; do
    $BIN bench -m $DIR/llama-1.1b.$ty.gguf -p 512 -n 128 -t 2 -r 3 ${BENCH_ARGS:-} --json | tee -a $DIR/results.jsonl
done
python3 - $DIR/results.jsonl <<'PY'
import json, sys
ref = {'q4_0': (123, 30), 'q8_0': (89, 21), 'q4_K': (103, 39)}  # a mature engine on this kind of machine
print('\n%-24s %10s %10s %9s %9s %12s' % ('model', 'pp512 t/s', 'tg128 t/s', 'GB/s', 'tg/limit', 'vs mature'))
for line in open(sys.argv[1]):
    d = json.loads(line)
    r = ref.get(d['type'])
    vs = 'pp %.2fx tg %.2fx' % (d['pp_tps'] / r[0], d['tg_tps'] / r[1]) if r else ''
    print('%-24s %10.1f %10.1f %9.1f %8.0f%% %s' % (d['model'], d['pp_tps'], d['tg_tps'], d['bandwidth_gbs'],
                                                     100 * d['tg_bandwidth_fraction'], vs))
PY
# The server under load: aggregate generation speed and time to first token
# with 1, 4 and 16 concurrent streams, on each model (BENCH_SERVE=0 skips it).
if [ "${BENCH_SERVE:-1}" != 0 ]; then
    for ty in $TYPES; do
        echo
        python3 bench/serve_load.py $DIR/llama-1.1b.$ty.gguf --tokens 64 --rounds 2
    done
fi
# The story engine: prompt tokens processed per turn over a 50-update story,
# and resuming it from a save vs re-processing (BENCH_STORY=0 skips it).
if [ "${BENCH_STORY:-1}" != 0 ] && [ -f $DIR/llama-1.1b.q4_k_m.gguf ]; then
    echo
    python3 bench/story.py $DIR/llama-1.1b.q4_k_m.gguf
fi
# The LLooM (issue 7): a depth-12 tree (cutoff 0.2, split 3) grown with one
# batched decode per depth vs one node per decode call, in the same run (wall
# times and ratio on stderr; BENCH_LOOM=0 skips it). The random-weight
# model's distributions are nearly flat (no token reaches 0.2, so that tree
# is one chain), so a second tree branches at every node: cutoff 0, split 3,
# depth 5 (363 nodes; its last frontier of 81 needs two batches).
if [ "${BENCH_LOOM:-1}" != 0 ] && [ -f $DIR/llama-1.1b.q4_k_m.gguf ]; then
    echo
    echo "loom, depth 12, cutoff 0.2, split 3:"
    $BIN loom -m $DIR/llama-1.1b.q4_k_m.gguf -p "Once upon a time" --depth 12 --cutoff 0.2 --split 3 -t 2 --compare >/dev/null
    echo "loom, depth 5, cutoff 0, split 3:"
    $BIN loom -m $DIR/llama-1.1b.q4_k_m.gguf -p "Once upon a time" --depth 5 --cutoff 0 --split 3 -t 2 --compare >/dev/null
fi
# The image engine (BENCH_IMAGE=0 skips it): a random-weight tiny-sd (F16,
# the published shapes: U-Net 323 M, text encoder 123 M, VAE 84 M
# parameters) written once by tools/mksd, then `simularity bench image` at
# 256x256 (one guided step, VAE decode, text encoder; TAESD 64² and 512²
# with the TAEF2 decoder when the shared data has it). See bench/README.md.
if [ "${BENCH_IMAGE:-1}" != 0 ]; then
    MKSD=${SIM_MKSD:-${SIM_BUILD:-build/release}/tools/mksd}
    [ -x "$MKSD" ] || make BUILD=${SIM_BUILD:-build/release} "$MKSD"
    if [ ! -d $DIR/tiny-sd ]; then
        rm -rf $DIR/tiny-sd.tmp
        "$MKSD" --family tiny-sd --out $DIR/tiny-sd.tmp --dtype f16
        mv $DIR/tiny-sd.tmp $DIR/tiny-sd
    fi
    TAESD=${SIM_SHARED:-/work/shared}/diffusion/taef2/taef2_decoder.pth
    echo
    if [ -f "$TAESD" ]; then
        $BIN bench image -m $DIR/tiny-sd -W 256 -H 256 -t 2 --taesd "$TAESD"
    else
        $BIN bench image -m $DIR/tiny-sd -W 256 -H 256 -t 2
    fi
fi

#!/usr/bin/env python3
"""Synthesize the demo scenario's looping ambience sounds.

Python 3 standard library only. Deterministic: every sound uses its own
fixed random seed, so re-running writes byte-identical files.

Output: ../sounds/{waves,storm,tavern}.wav — mono, 22050 Hz, 16-bit PCM.
Each loop is made seamless by synthesizing a little more than the loop
length and crossfading that tail into the start (equal-power curves), so
the last sample flows into the first.

Usage:  python3 scenarios/demo/tools/make_sounds.py
Then:   python3 scenarios/demo/tools/update_hashes.py
"""
import math
import os
import random
import struct
import wave

RATE = 22050
XFADE = 0.5  # seconds of crossfade at the loop point
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "sounds")


# ---------------------------------------------------------------- helpers

def white(rng, n):
    return [rng.uniform(-1.0, 1.0) for _ in range(n)]


def lowpass(x, cutoff):
    """One-pole low-pass."""
    a = math.exp(-2.0 * math.pi * cutoff / RATE)
    y, s = [], 0.0
    for v in x:
        s = (1.0 - a) * v + a * s
        y.append(s)
    return y


def highpass(x, cutoff):
    lp = lowpass(x, cutoff)
    return [a - b for a, b in zip(x, lp)]


def bandpass(x, freq, q, freq_mod=None):
    """RBJ biquad band-pass (constant peak gain); freq_mod(i) -> Hz if given."""
    y = []
    x1 = x2 = y1 = y2 = 0.0
    coef = None
    for i, v in enumerate(x):
        if coef is None or (freq_mod is not None and i % 32 == 0):
            f = freq_mod(i) if freq_mod is not None else freq
            w0 = 2.0 * math.pi * f / RATE
            alpha = math.sin(w0) / (2.0 * q)
            a0 = 1.0 + alpha
            coef = (alpha / a0, -alpha / a0, -2.0 * math.cos(w0) / a0,
                    (1.0 - alpha) / a0)
        b0, b2, a1, a2 = coef
        out = b0 * v + b2 * x2 - a1 * y1 - a2 * y2
        x2, x1 = x1, v
        y2, y1 = y1, out
        y.append(out)
    return y


def periodic(t, period, phase=0.0):
    """A sine in [0, 1] with an integer number of cycles per loop."""
    return 0.5 + 0.5 * math.sin(2.0 * math.pi * t / period + phase)


def loop_seamless(x, n_loop):
    """x has n_loop + fade samples; fold the tail onto the head."""
    fade = len(x) - n_loop
    y = x[:n_loop]
    for i in range(fade):
        w = i / fade
        y[i] = x[i] * math.sin(0.5 * math.pi * w) + \
            x[n_loop + i] * math.cos(0.5 * math.pi * w)
    return y


def write(name, samples, peak=0.7):
    m = max(abs(v) for v in samples) or 1.0
    g = peak / m
    data = b"".join(struct.pack("<h", int(round(max(-1.0, min(1.0, v * g)) * 32767)))
                    for v in samples)
    path = os.path.join(OUT, name)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data)
    print("wrote %s (%d samples, %.1f s)" % (path, len(samples), len(samples) / RATE))


# ---------------------------------------------------------------- sounds

def waves(seconds=5.0):
    """Harbour water: low rolling noise with one slow swell and a hiss as it breaks."""
    rng = random.Random(1871)
    n = int(seconds * RATE)
    total = n + int(XFADE * RATE)
    body = lowpass(lowpass(white(rng, total), 380.0), 520.0)
    hiss = highpass(white(rng, total), 1800.0)
    hiss = lowpass(hiss, 5200.0)
    out = []
    for i in range(total):
        t = i / RATE
        swell = periodic(t, seconds, -math.pi / 2) ** 1.6
        ripple = periodic(t, seconds / 5.0, 0.7)
        brk = periodic(t, seconds, 0.9) ** 6  # the wash just after the crest
        out.append(body[i] * (0.35 + 0.9 * swell + 0.15 * ripple) * 3.2 +
                   hiss[i] * (0.04 + 0.55 * brk))
    return loop_seamless(out, n)


def storm(seconds=4.0):
    """Wind gusting through a resonant band plus steady rain and drips."""
    rng = random.Random(1912)
    n = int(seconds * RATE)
    total = n + int(XFADE * RATE)

    def wind_freq(i):
        t = i / RATE
        return 320.0 + 260.0 * periodic(t, seconds, 0.3) + 90.0 * periodic(t, seconds / 3.0, 2.0)

    wind = bandpass(white(rng, total), 400.0, 2.2, wind_freq)
    wind2 = bandpass(white(rng, total), 900.0, 4.0,
                     lambda i: 700.0 + 400.0 * periodic(i / RATE, seconds / 2.0, 1.1))
    rain = lowpass(highpass(white(rng, total), 2500.0), 7000.0)
    drips = [0.0] * total
    for _ in range(int(seconds * 55)):
        at = rng.randrange(total - 400)
        amp = rng.uniform(0.2, 1.0)
        freq = rng.uniform(1800.0, 4200.0)
        for k in range(300):
            drips[at + k] += amp * math.exp(-k / 40.0) * math.sin(2 * math.pi * freq * k / RATE)
    out = []
    for i in range(total):
        t = i / RATE
        gust = 0.35 + 0.65 * periodic(t, seconds, -1.2) ** 2
        out.append(wind[i] * gust * 1.6 + wind2[i] * gust * 0.5 +
                   rain[i] * 0.55 + drips[i] * 0.08)
    return loop_seamless(out, n)


def tavern(seconds=4.0):
    """Indoor murmur: several babbling voices, a crackling fire, a glass clink."""
    rng = random.Random(1888)
    n = int(seconds * RATE)
    total = n + int(XFADE * RATE)
    out = [0.0] * total
    for v in range(7):
        formant = rng.uniform(280.0, 620.0)
        src = bandpass(white(rng, total), formant, 3.0)
        src = [a + 0.6 * b for a, b in zip(src, bandpass(white(rng, total), formant * 2.4, 5.0))]
        # syllables: a smoothed random on/off pattern
        env, level, target = [], 0.0, 0.0
        next_change = 0
        for i in range(total):
            if i >= next_change:
                target = rng.choice((0.0, 0.0, 0.4, 0.8, 1.0))
                next_change = i + int(RATE * rng.uniform(0.08, 0.25))
            level += (target - level) * 0.004
            env.append(level)
        gain = rng.uniform(0.5, 1.0) * (0.55 if v > 3 else 1.0)
        for i in range(total):
            out[i] += src[i] * env[i] * gain
    out = lowpass(out, 2400.0)
    room = lowpass(white(rng, total), 120.0)
    crackle = [0.0] * total
    for _ in range(int(seconds * 18)):
        at = rng.randrange(total - 200)
        amp = rng.uniform(0.1, 1.0)
        for k in range(60):
            crackle[at + k] += amp * rng.uniform(-1, 1) * math.exp(-k / 8.0)
    crackle = highpass(crackle, 1500.0)
    clink = [0.0] * total
    at = int(total * 0.62)
    for f, a in ((2637.0, 1.0), (3951.0, 0.6), (5274.0, 0.3)):
        for k in range(int(RATE * 0.6)):
            clink[at + k] += a * math.exp(-k / (RATE * 0.12)) * math.sin(2 * math.pi * f * k / RATE)
    for i in range(total):
        out[i] = out[i] * 2.2 + room[i] * 1.5 + crackle[i] * 0.35 + clink[i] * 0.05
    return loop_seamless(out, n)


def main():
    os.makedirs(OUT, exist_ok=True)
    write("waves.wav", waves())
    write("storm.wav", storm())
    write("tavern.wav", tavern(), peak=0.6)


if __name__ == "__main__":
    main()

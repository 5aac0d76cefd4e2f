#!/usr/bin/env python3
"""Reference for `basin bench transformer`: the same GPT-2-small-shaped forward pass in NumPy (float32),
so Basin's tokens/s can be compared with a second implementation on the same machine in one sitting.

PyTorch cannot be installed on the machine Basin's figures were measured on; NumPy can, and it multiplies
matrices through its own OpenBLAS build. This is an eager implementation written the way PyTorch's eager
GPT-2 runs (one batched matmul per projection, batched attention per head), not a tuned kernel.

Usage: OPENBLAS_NUM_THREADS=2 python3 scripts/transformer_bench_numpy.py [--layers 12 --width 768 --heads 12
       --vocabulary 50257 --sequence 128 --batch 8 --repeats 3]
Run Basin the same way: basin bench transformer --threads 2
"""
import argparse
import time

import numpy as np


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x)))


def linear(x, w, b=None):
    # One 2-D product over all positions, as torch's Linear/Conv1D do (numpy's 3-D @ 2-D is slower).
    y = x.reshape(-1, x.shape[-1]) @ w
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (w.shape[1],))


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(eps)) * w + b


def forward(p, ids, layers, heads):
    n, l = ids.shape
    d = p["wte"].shape[1]
    hd = d // heads
    h = p["wte"][ids] + p["wpe"][:l]
    mask = np.triu(np.full((l, l), -np.inf, dtype=np.float32), 1)
    for i in range(layers):
        a = layer_norm(h, p[f"ln1w{i}"], p[f"ln1b{i}"])
        qkv = linear(a, p[f"attnw{i}"], p[f"attnb{i}"])
        q, k, v = np.split(qkv, 3, axis=-1)
        q = q.reshape(n, l, heads, hd).transpose(0, 2, 1, 3)
        k = k.reshape(n, l, heads, hd).transpose(0, 2, 1, 3)
        v = v.reshape(n, l, heads, hd).transpose(0, 2, 1, 3)
        s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1 / np.sqrt(hd)) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(0, 2, 1, 3).reshape(n, l, d)
        h = h + linear(o, p[f"projw{i}"], p[f"projb{i}"])
        x = layer_norm(h, p[f"ln2w{i}"], p[f"ln2b{i}"])
        f = gelu_new(linear(x, p[f"fcw{i}"], p[f"fcb{i}"]))
        h = h + linear(f, p[f"mlpw{i}"], p[f"mlpb{i}"])
    h = layer_norm(h, p["lnfw"], p["lnfb"])
    return linear(h, p["wte"].T)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocabulary", type=int, default=50257)
    ap.add_argument("--sequence", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    d, f = a.width, 4 * a.width

    def normal(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))

    p = {"wte": normal(a.vocabulary, d), "wpe": normal(1024, d), "lnfw": np.ones(d, np.float32), "lnfb": np.zeros(d, np.float32)}
    for i in range(a.layers):
        p.update({f"ln1w{i}": np.ones(d, np.float32), f"ln1b{i}": np.zeros(d, np.float32),
                  f"attnw{i}": normal(d, 3 * d), f"attnb{i}": np.zeros(3 * d, np.float32),
                  f"projw{i}": normal(d, d), f"projb{i}": np.zeros(d, np.float32),
                  f"ln2w{i}": np.ones(d, np.float32), f"ln2b{i}": np.zeros(d, np.float32),
                  f"fcw{i}": normal(d, f), f"fcb{i}": np.zeros(f, np.float32),
                  f"mlpw{i}": normal(f, d), f"mlpb{i}": np.zeros(d, np.float32)})
    ids = rng.integers(0, a.vocabulary, size=(a.batch, a.sequence))
    best = float("inf")
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        z = forward(p, ids, a.layers, a.heads)
        best = min(best, time.perf_counter() - t0)
        assert z.shape == (a.batch, a.sequence, a.vocabulary) and z.dtype == np.float32
    tokens = a.batch * a.sequence
    print(f"numpy {np.__version__} forward, batch {a.batch} x sequence {a.sequence}: {best * 1e3:.1f} ms, {tokens / best:.0f} tokens/s")


if __name__ == "__main__":
    main()

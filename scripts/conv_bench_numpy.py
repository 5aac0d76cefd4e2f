#!/usr/bin/env python3
"""Reference for `basin bench conv`: the same ResNet-20 forward pass (CIFAR layout, 3x32x32 input, widths
16/32/64, three BasicBlocks per stage, 1x1 stride-2 conv + BatchNorm shortcuts where a stage halves the
resolution, global average pool, linear to 10 classes; eval mode, random weights, batch 256) in NumPy
(float32), so Basin's images/s can be compared with a second implementation on the same machine in one sitting.

PyTorch cannot be installed on the machine Basin's figures were measured on; NumPy can, and it multiplies
matrices through its own OpenBLAS build. Each convolution is im2col (the padded input copied into columns [C*KH*KW, N*OH*OW], one
strided slice per kernel offset) followed by one matmul with the [OC, C*KH*KW] weight, the way PyTorch's CPU "slow" path
(THNN unfold + gemm) computes it; BatchNorm (eval: one scale and shift per channel), ReLU and the residual adds
are separate NumPy passes. PyTorch's default CPU path (oneDNN/mkldnn direct convolution) would likely be faster;
that figure is not available here.

Usage: OPENBLAS_NUM_THREADS=2 python3 scripts/conv_bench_numpy.py [--batch 256 --repeats 3]
Run Basin the same way: basin bench conv --threads 2
"""
import argparse
import time

import numpy as np


def conv(x, w, stride, pad):
    """x [N, C, H, W] (float32), w [OC, C, KH, KW] -> [N, OC, OH, OW] by im2col + one matmul."""
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    # Columns [C, KH, KW, N, OH, OW]: one strided slice copy per kernel offset.
    cols = np.empty((c, kh, kw, n, oh, ow), np.float32)
    xt = x.transpose(1, 0, 2, 3)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xt[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    y = w.reshape(oc, -1) @ cols.reshape(c * kh * kw, n * oh * ow)  # [OC, N*OH*OW]
    return np.ascontiguousarray(y.reshape(oc, n, oh, ow).transpose(1, 0, 2, 3))


def bn(x, p, eps=np.float32(1e-5)):
    scale = p["weight"] / np.sqrt(p["running_var"] + eps)
    shift = p["bias"] - p["running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def relu(x):
    return np.maximum(x, 0, out=x)


def make(rng, widths=(16, 32, 64), blocks=3):
    def conv_w(oc, c, k):
        bound = 1 / np.sqrt(c * k * k)
        return rng.uniform(-bound, bound, (oc, c, k, k)).astype(np.float32)

    def bn_p(c):
        return {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32),
                "running_mean": rng.uniform(-0.1, 0.1, c).astype(np.float32),
                "running_var": rng.uniform(0.5, 1.5, c).astype(np.float32)}

    net = {"conv1": conv_w(widths[0], 3, 3), "bn1": bn_p(widths[0]), "blocks": []}
    channels = widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks):
            stride = 2 if s > 0 and b == 0 else 1
            blk = {"stride": stride, "conv1": conv_w(width, channels, 3), "bn1": bn_p(width),
                   "conv2": conv_w(width, width, 3), "bn2": bn_p(width)}
            if stride != 1 or channels != width:
                blk["down"] = conv_w(width, channels, 1)
                blk["downbn"] = bn_p(width)
            net["blocks"].append(blk)
            channels = width
    bound = 1 / np.sqrt(channels)
    net["fc_w"] = rng.uniform(-bound, bound, (10, channels)).astype(np.float32)
    net["fc_b"] = rng.uniform(-bound, bound, 10).astype(np.float32)
    return net


def forward(net, x):
    h = relu(bn(conv(x, net["conv1"], 1, 1), net["bn1"]))
    for blk in net["blocks"]:
        a = relu(bn(conv(h, blk["conv1"], blk["stride"], 1), blk["bn1"]))
        m = bn(conv(a, blk["conv2"], 1, 1), blk["bn2"])
        s = bn(conv(h, blk["down"], blk["stride"], 0), blk["downbn"]) if "down" in blk else h
        h = relu(m + s)
    pooled = h.mean(axis=(2, 3))
    return pooled @ net["fc_w"].T + net["fc_b"]


def flops(widths=(16, 32, 64), blocks=3, size=32):
    total = 2 * 3 * 9 * widths[0] * size * size
    channels = widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks):
            stride = 2 if s > 0 and b == 0 else 1
            size //= stride
            total += 2 * channels * 9 * width * size * size + 2 * width * 9 * width * size * size
            if stride != 1 or channels != width:
                total += 2 * channels * width * size * size
            channels = width
    return total + 2 * channels * 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    net = make(rng)
    x = rng.uniform(0, 1, (args.batch, 3, 32, 32)).astype(np.float32)
    forward(net, x)  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        forward(net, x)
        best = min(best, time.perf_counter() - t0)
    f = flops()
    print(f"numpy {np.__version__} ResNet-20 (CIFAR, 3x32x32, widths 16/32/64), batch {args.batch}, "
          f"{f / 1e6:.1f} MFLOP per image: {best * 1e3:.1f} ms per batch, {args.batch / best:.0f} images/s, "
          f"{f * args.batch / best / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()

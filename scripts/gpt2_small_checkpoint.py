#!/usr/bin/env python3
"""Writes a GPT-2-small-shaped Hugging Face folder with random float32 weights (124M parameters, ~498 MB),
sharded as save_pretrained shards it (model-0000i-of-0000n.safetensors + model.safetensors.index.json,
header metadata {"format": "pt"}), and a token data set (input_ids / labels int64 [N, L]) to evaluate it on.
Used to measure Basin's peak memory when loading and evaluating a sharded checkpoint (docs/transformers.md).

Usage: python3 scripts/gpt2_small_checkpoint.py OUT_DIR [--shard-mb 200] [--rows 8] [--sequence 128]
Then:  /usr/bin/time -v basin eval OUT_DIR/gpt2-small --data OUT_DIR/tokens.safetensors
"""
import argparse
import json
import os
import struct

import numpy as np


def write_safetensors(path, tensors, metadata=None):
    header = {}
    offset = 0
    for name, a in tensors:
        dtype = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a).tobytes())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--shard-mb", type=int, default=200)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--sequence", type=int, default=128)
    args = p.parse_args()
    layers, d, heads, vocab, positions = 12, 768, 12, 50257, 1024
    rng = np.random.default_rng(0)
    tensors = [("transformer.wte.weight", (vocab, d)), ("transformer.wpe.weight", (positions, d))]
    for i in range(layers):
        h = f"transformer.h.{i}."
        tensors += [(h + "ln_1.weight", (d,)), (h + "ln_1.bias", (d,)), (h + "attn.c_attn.weight", (d, 3 * d)),
                    (h + "attn.c_attn.bias", (3 * d,)), (h + "attn.c_proj.weight", (d, d)), (h + "attn.c_proj.bias", (d,)),
                    (h + "ln_2.weight", (d,)), (h + "ln_2.bias", (d,)), (h + "mlp.c_fc.weight", (d, 4 * d)),
                    (h + "mlp.c_fc.bias", (4 * d,)), (h + "mlp.c_proj.weight", (4 * d, d)), (h + "mlp.c_proj.bias", (d,))]
    tensors += [("transformer.ln_f.weight", (d,)), ("transformer.ln_f.bias", (d,))]
    folder = os.path.join(args.out, "gpt2-small")
    os.makedirs(folder, exist_ok=True)
    # Shards of at most --shard-mb, tensors in order.
    shards, current, size = [], [], 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 4
        if current and size + n > args.shard_mb << 20:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += n
    shards.append(current)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        arrays = []
        for name, shape in shard:
            if name.endswith(".bias"):
                a = np.zeros(shape, np.float32)
            elif "ln_" in name:
                a = np.ones(shape, np.float32)
            else:
                a = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
            arrays.append((name, a))
            weight_map[name] = fname
            total += a.nbytes
        write_safetensors(os.path.join(folder, fname), arrays, {"format": "pt"})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab, "n_positions": positions,
              "n_embd": d, "n_layer": layers, "n_head": heads, "n_inner": None, "activation_function": "gelu_new",
              "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True, "initializer_range": 0.02}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    ids = rng.integers(0, vocab, size=(args.rows, args.sequence), dtype=np.int64)
    labels = np.concatenate([ids[:, 1:], np.full((args.rows, 1), -100, np.int64)], axis=1)
    write_safetensors(os.path.join(args.out, "tokens.safetensors"), [("input_ids", ids), ("labels", labels)])
    print(f"{folder}: {len(shards)} shards, {total / 1e6:.1f} MB float32; {args.out}/tokens.safetensors: {args.rows} x {args.sequence}")


if __name__ == "__main__":
    main()

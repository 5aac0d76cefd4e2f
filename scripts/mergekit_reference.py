#!/usr/bin/env python3
"""Reference outputs for the mergekit methods that have no mergekit-made fixture.

mergekit and PyTorch cannot be installed on the machine Basin is developed on, so the fixtures made by mergekit
0.1.5 itself (Tests/Fixtures/transformers/mergekit, from ../shared) cover 10 of its 20 methods. For six more
deterministic methods this script transcribes mergekit's own code line by line into float32 numpy (the sources it
follows are named in each function: mergekit/merge_methods/*.py and mergekit/sparsify.py at arcee-ai/mergekit
a6e4028, whose methods match 0.1.5's registry except the breadcrumbs rank slice, taken here as 0.1.5 has it) and
writes, for each recipe in Tests/Fixtures/transformers/reference/NAME.yml, the merged values of a few tensors to
reference/NAME.safetensors. MergekitReferenceTests compares Basin's merges with them (1e-6).

Run from Tests/Fixtures/transformers:  python3 ../../../scripts/mergekit_reference.py
"""
import json
import struct
import sys

import numpy as np

F = np.float32
TENSORS = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.input_layernorm.weight",
           "model.layers.1.mlp.down_proj.weight", "model.layers.1.self_attn.k_proj.weight", "lm_head.weight"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32"
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        blobs.append(t.tobytes())
        offset += t.nbytes
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def model(name):
    return read_safetensors(f"./{name}/model.safetensors")


def sign_mask(weighted):
    # generalized_task_arithmetic.get_mask(method="sum"): sign == (sum >= 0) * 2 - 1
    majority = np.where(weighted.sum(axis=0, dtype=F) >= 0, F(1), F(-1))
    return (np.sign(weighted) == majority).astype(F)


def breadcrumbs_ties(base, xs, weights, density, gamma, lam):
    # generalized_task_arithmetic.GTATask.execute with sparsify.magnitude_outliers (0.1.5: ranks [n_bot, n - n_top))
    deltas = []
    for x in xs:
        d = (x - base).astype(F)
        n = d.size
        target = int(density * n)
        n_top = int(gamma * n)
        n_bot = n - target - n_top
        if n_bot < 0:
            n_top += n_bot
            n_bot = 0
        order = np.argsort(np.abs(d).reshape(-1), kind="stable")
        mask = np.zeros(n, dtype=F)
        mask[order[n_bot:n - n_top]] = 1
        deltas.append(d * mask.reshape(d.shape))
    deltas = np.stack(deltas)
    w = np.array(weights, dtype=F).reshape((-1,) + (1,) * base.ndim)
    weighted = deltas * w
    mask = sign_mask(weighted)
    mixed = (weighted * mask).sum(axis=0, dtype=F)  # normalize defaults to false
    if lam != 1:
        mixed = mixed * F(lam)
    return (base + mixed).astype(F)


def sce(base, xs, select_topk):
    # merge_methods/sce.py
    tvs = np.stack([(x - base).astype(F) for x in xs])
    if select_topk < 1:
        var = tvs.var(axis=0, dtype=F)  # unbiased=False
        k = int(np.count_nonzero(var) * select_topk)
        mask = np.zeros(var.size, dtype=F)
        if k > 0:
            mask[np.argsort(-np.abs(var).reshape(-1), kind="stable")[:k]] = 1
        tvs = tvs * mask.reshape(var.shape)[None]
    erase = sign_mask(tvs)
    weights = (tvs.astype(F) ** 2).reshape(len(xs), -1).mean(axis=1, dtype=F)
    total = weights.sum(dtype=F)
    weights = np.full_like(weights, F(1) / len(xs)) if abs(total) < 1e-6 else (weights / total).astype(F)
    erased = weights.reshape((-1,) + (1,) * base.ndim) * erase
    merged = (tvs * erased).sum(axis=0, dtype=F)
    return (base + merged / np.maximum(erased.sum(axis=0, dtype=F), F(1e-6))).astype(F)


def nearswap(base, x, t):
    # merge_methods/nearswap.py
    absdiff = np.abs(base - x)
    weight = np.clip(F(t) / np.maximum(absdiff, F(1e-6)), 0, 1).astype(F)
    return (weight * x + (F(1) - weight) * base).astype(F)


def multislerp(base, xs, weights, normalize_weights=True, eps=1e-8):
    # merge_methods/multislerp.py
    tensors = np.stack(xs).astype(F) - base
    flat = tensors.reshape(len(xs), -1)
    w = np.array(weights, dtype=F)
    if normalize_weights:
        w = w / w.sum(dtype=F)
    norms = np.sqrt((flat.astype(F) ** 2).sum(axis=1, dtype=F, keepdims=True)).astype(F)
    unit = flat / (norms + F(eps))
    mean = (unit * w[:, None]).sum(axis=0, dtype=F)
    mean = mean / np.sqrt((mean ** 2).sum(dtype=F))
    dots = (unit * mean).sum(axis=-1, dtype=F, keepdims=True)
    tangent = unit - dots * mean
    result_t = (tangent * w[:, None]).sum(axis=0, dtype=F)
    tn = np.sqrt((result_t ** 2).sum(dtype=F)) + F(eps)
    result = mean * np.cos(tn) + result_t * (np.sin(tn) / tn)
    avg = (norms[:, 0] * w).sum(dtype=F)
    return (result * avg).reshape(base.shape).astype(F) + base


def ram_vectors(base, xs, epsilon):
    tv = np.stack([(x - base).astype(F) for x in xs]).reshape(len(xs), -1)
    nonzero = np.abs(tv) > epsilon
    counts = nonzero.sum(axis=0, keepdims=True)
    return tv, nonzero, counts, counts > 1, counts == 1


def ram(base, xs, epsilon):
    # merge_methods/ram.py ram_merge
    tv, nonzero, counts, overlap, unique = ram_vectors(base, xs, epsilon)
    z = tv * nonzero
    merged = (z * unique + z * overlap / np.maximum(counts, 1).astype(F)).sum(axis=0, dtype=F)
    return (base + merged.reshape(base.shape)).astype(F)


def ramplus_tl(base, xs, r, alpha, epsilon):
    # merge_methods/ram.py ramplus_tl_merge
    tv, nonzero, counts, overlap, unique = ram_vectors(base, xs, epsilon)
    shared = (nonzero & overlap).sum(axis=1).astype(F)
    uniq = (nonzero & unique).sum(axis=1).astype(F)
    rho = shared / np.maximum(uniq, F(epsilon))
    lam = F(1) + F(r) * np.clip(rho, 0, alpha).astype(F)
    z = tv * nonzero
    merged = (z * unique * lam[:, None] + z * overlap / np.maximum(counts, 1).astype(F)).sum(axis=0, dtype=F)
    return (base + merged.reshape(base.shape)).astype(F)


def arcee_fusion(base, x):
    # merge_methods/arcee_fusion.py (tensors under 1e6 elements: no sampling)
    def softmax(v):
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True, dtype=F)).astype(F)
    diff = np.abs(x - base)
    p = softmax(x) + F(1e-8)
    q = softmax(base) + F(1e-8)
    kl = (p * np.log(p / q)).sum(axis=-1, dtype=F)
    importance = (diff * np.expand_dims(kl, -1)).astype(F)
    s = np.sort(importance.reshape(-1))

    def quantile(qv):
        return s[int(np.float32(qv) * np.float32(s.size - 1))]
    threshold = quantile(0.5) + F(1.5) * (quantile(0.75) - quantile(0.25))
    mask = (importance >= threshold).astype(F)
    return (base + (x - base) * mask).astype(F)


def main():
    base, add, sub, mul = (model(n) for n in ["llama-tiny-base", "llama-tiny-ft-add", "llama-tiny-ft-sub", "llama-tiny-ft-mul"])
    fts = [add, sub, mul]
    recipes = {
        "breadcrumbs_ties": lambda n: breadcrumbs_ties(base[n], [m[n] for m in fts], [1.0, 0.7, 0.5], 0.8, 0.02, 0.8),
        "sce": lambda n: sce(base[n], [m[n] for m in fts], 0.5),
        "nearswap": lambda n: nearswap(base[n], add[n], 0.004),
        "multislerp": lambda n: multislerp(base[n], [m[n] for m in fts], [0.5, 0.3, 0.2]),
        "ram": lambda n: ram(base[n], [m[n] for m in fts], 1e-3),
        "ramplus_tl": lambda n: ramplus_tl(base[n], [m[n] for m in fts], 0.1, 0.2, 1e-3),
        "arcee_fusion": lambda n: arcee_fusion(base[n], add[n]),
    }
    only = sys.argv[1:] or list(recipes)
    for name in only:
        out = {n: recipes[name](n) for n in TENSORS}
        write_safetensors(f"reference/{name}.safetensors", out,
                          {"made_by": "scripts/mergekit_reference.py (numpy transcription of mergekit's code)", "recipe": f"reference/{name}.yml"})
        print(name, {n: float(np.abs(out[n] - base[n]).max()) for n in TENSORS})


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference timings for Basin's alignment benchmarks (numpy + SciPy), to run beside `basin bench lap` and
`basin bench match` on the same machine in one sitting (method and figures: docs/alignment.md).

    python3 scripts/alignment_reference.py lap --kind uniform|integer|correlation [--sizes 1024 2048 4096] [--seed S]
    python3 scripts/alignment_reference.py match --sizes 784 2048 2048 2048 10 [--seed S] [--basin-json FILE]

`lap` regenerates exactly the cost matrices `basin bench lap` times (the same SplitMix64 stream, the same
recipes) and times scipy.optimize.linear_sum_assignment on them; the optimal totals it prints must equal
Basin's. `match` runs Git Re-Basin weight matching (Ainsworth et al. 2023, the authors' `weight_matching`
ported from JAX to numpy: permuted copies of B via np.take, A += W_a @ W_b^T in float32, then
linear_sum_assignment) on the same two randomly initialised MLPs as `basin bench match`, following the sweep
order Basin used (read from `basin bench match --json` output with --basin-json, or drawn from the same seed
with --sweeps N) so both do the same work.
Needs only numpy and scipy.
"""
import argparse
import json
import sys
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class SplitMix64:
    """Basin's SeededGenerator (BasinTensor/SeededGenerator.swift), vectorised."""

    def __init__(self, seed):
        self.state = (np.uint64(seed) + GOLDEN) & np.uint64(0xFFFFFFFFFFFFFFFF)

    def raw(self, count):
        with np.errstate(over="ignore"):
            steps = np.arange(1, count + 1, dtype=np.uint64)
            z = self.state + steps * GOLDEN
            self.state = self.state + np.uint64(count) * GOLDEN
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))

    def unit(self, count):
        return (self.raw(count) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)

    def uniform32(self, count, low, high):
        # Swift: low + (high - low) * Float(nextUnit()), in Float.
        low, high = np.float32(low), np.float32(high)
        return low + (high - low) * self.unit(count).astype(np.float32)

    def permutation(self, n):
        p = list(range(n))
        if n > 1:
            draws = self.raw(n - 1)
            for k, i in enumerate(range(n - 1, 0, -1)):
                j = int(draws[k] % np.uint64(i + 1))
                p[i], p[j] = p[j], p[i]
        return p


# ---------------------------------------------------------------------------------------------- lap

CORRELATION_SAMPLES = 64
DEAD_FRACTION = 0.1


def lap_costs(kind, n, gen):
    """The n x n cost matrix of `basin bench lap --kind KIND` (LAPBenchmark.swift, `costs`)."""
    if kind == "uniform":
        return gen.unit(n * n).reshape(n, n)
    if kind == "integer":
        return np.floor(gen.unit(n * n) * 100).reshape(n, n)
    if kind == "correlation":
        m = CORRELATION_SAMPLES
        x = (gen.unit(m * n) - 0.5).reshape(m, n)
        perm = gen.permutation(n)
        y = x[:, perm] + (gen.unit(m * n) - 0.5).reshape(m, n)
        x[:, gen.unit(n) < DEAD_FRACTION] = 0
        y[:, gen.unit(n) < DEAD_FRACTION] = 0

        def standardise(a):
            a = a - a.mean(axis=0)
            norm = np.sqrt((a * a).sum(axis=0))
            scale = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
            return a * scale

        return 1.0 - standardise(x).T @ standardise(y)
    raise ValueError(kind)


def run_lap(args):
    gen = SplitMix64(args.seed)
    results = []
    if not args.json:
        print(f"scipy.optimize.linear_sum_assignment, {args.kind} costs, seed {args.seed}, best of {args.repeats}")
    for n in args.sizes:
        cost = lap_costs(args.kind, n, gen)
        best = None
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.thread_time()
            rows, cols = linear_sum_assignment(cost)
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            if best is None or wall < best[0]:
                best = (wall, cpu)
        total = float(cost[rows, cols].sum())
        results.append({"n": n, "seconds": best[0], "cpuSeconds": best[1], "total": total})
        if not args.json:
            print(f"n = {n:5d}  {best[0]:9.4f} s  (cpu {best[1]:9.4f} s)  optimal total {total:.6f}", flush=True)
    if args.json:
        print(json.dumps({"kind": args.kind, "seed": args.seed, "results": results}))


# -------------------------------------------------------------------------------------------- match


def synthetic_mlp(sizes, seed):
    """Benchmarks.syntheticMLP + Trainer.initialise (BasinNet): PyTorch-style uniform(-1/sqrt(fan_in), ...)
    weights [out, in] and biases, layer by layer, from SeededGenerator(seed)."""
    gen = SplitMix64(seed)
    params = {}
    for i in range(len(sizes) - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        bound = np.float32(1) / np.sqrt(np.float32(fan_in))
        params[f"layers.{i}.weight"] = gen.uniform32(fan_in * fan_out, -bound, bound).reshape(fan_out, fan_in)
        params[f"layers.{i}.bias"] = gen.uniform32(fan_out, -bound, bound)
    return params


def mlp_permutation_spec(layers):
    """Git Re-Basin's mlp_permutation_spec: P_layers.l permutes the rows of layer l and the columns of l + 1."""
    perm_to_axes = {}
    for l in range(layers - 1):
        perm_to_axes[f"P_layers.{l}"] = [(f"layers.{l}.weight", 0), (f"layers.{l}.bias", 0), (f"layers.{l + 1}.weight", 1)]
    axes_to_perm = {}
    for p, axes in perm_to_axes.items():
        for name, axis in axes:
            axes_to_perm.setdefault(name, {})[axis] = p
    return perm_to_axes, axes_to_perm


def get_permuted_param(axes_to_perm, perm, name, params, except_axis=None):
    w = params[name]
    for axis, p in axes_to_perm.get(name, {}).items():
        if axis != except_axis:
            w = np.take(w, perm[p], axis=axis)
    return w


def run_match(args):
    sizes = args.sizes
    a = synthetic_mlp(sizes, args.seed + 1)
    b = synthetic_mlp(sizes, args.seed + 2)
    perm_to_axes, axes_to_perm = mlp_permutation_spec(len(sizes) - 1)
    names = list(perm_to_axes)
    size = {p: a[axes[0][0]].shape[axes[0][1]] for p, axes in perm_to_axes.items()}
    if args.basin_json:
        with open(args.basin_json) as f:
            basin = json.load(f)
        if basin["sizes"] != sizes or basin["seed"] != args.seed:
            sys.exit(f"{args.basin_json} is for sizes {basin['sizes']} seed {basin['seed']}")
        order = basin["order"]
    else:
        # Basin's order: SeededGenerator(seed).permutation(groups) per sweep.
        gen = SplitMix64(args.seed)
        order = []
        for _ in range(args.sweeps):
            order += [names[i] for i in gen.permutation(len(names))]

    def objective(perm):
        return sum(float(np.vdot(a[k].astype(np.float64), get_permuted_param(axes_to_perm, perm, k, b).astype(np.float64)))
                   for k in axes_to_perm)

    perm = {p: np.arange(n) for p, n in size.items()}
    before = objective(perm)
    similarity_seconds = solver_seconds = similarity_cpu = solver_cpu = 0.0
    start, start_cpu = time.perf_counter(), time.process_time()
    improvements = 0
    for p in order:
        n = size[p]
        t0, c0 = time.perf_counter(), time.process_time()
        A = np.zeros((n, n), dtype=np.float32)
        for name, axis in perm_to_axes[p]:
            w_a = np.moveaxis(a[name], axis, 0).reshape((n, -1))
            w_b = np.moveaxis(get_permuted_param(axes_to_perm, perm, name, b, except_axis=axis), axis, 0).reshape((n, -1))
            A += w_a @ w_b.T
        t1, c1 = time.perf_counter(), time.process_time()
        ri, ci = linear_sum_assignment(A, maximize=True)
        old = float(A[np.arange(n), perm[p]].astype(np.float64).sum())
        new = float(A[np.arange(n), ci].astype(np.float64).sum())
        if new > old + 1e-12 * max(1.0, abs(old)):
            perm[p] = ci
            improvements += 1
        t2, c2 = time.perf_counter(), time.process_time()
        similarity_seconds += t1 - t0
        solver_seconds += t2 - t1
        similarity_cpu += c1 - c0
        solver_cpu += c2 - c1
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    after = objective(perm)
    out = {"sizes": sizes, "seed": args.seed, "steps": len(order), "improvements": improvements,
           "seconds": seconds, "similaritySeconds": similarity_seconds, "solverSeconds": solver_seconds,
           "cpuSeconds": cpu, "similarityCPUSeconds": similarity_cpu, "solverCPUSeconds": solver_cpu,
           "objectiveBefore": before, "objectiveAfter": after}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"numpy + SciPy weight matching MLP {'-'.join(map(str, sizes))}: {len(order)} steps "
              f"({improvements} improved), objective {before:.6g} -> {after:.6g}")
        print(f"  coordinate descent {seconds:.3f} s = similarities {similarity_seconds:.3f} s "
              f"+ solver {solver_seconds:.3f} s")
        print(f"  cpu (all threads) {cpu:.3f} s = similarities {similarity_cpu:.3f} s + solver {solver_cpu:.3f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    lap = sub.add_parser("lap", help="time linear_sum_assignment on basin bench lap's matrices")
    lap.add_argument("--kind", choices=["uniform", "integer", "correlation"], default="uniform")
    lap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    lap.add_argument("--seed", type=int, default=0)
    lap.add_argument("--repeats", type=int, default=3)
    lap.add_argument("--json", action="store_true")
    match = sub.add_parser("match", help="numpy + SciPy weight matching on basin bench match's models")
    match.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 512, 10])
    match.add_argument("--seed", type=int, default=0)
    match.add_argument("--sweeps", type=int, default=5, help="sweeps to run when no --basin-json is given")
    match.add_argument("--basin-json", help="`basin bench match --json` output: follow its steps")
    match.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.command == "lap":
        run_lap(args)
    else:
        run_match(args)


if __name__ == "__main__":
    main()

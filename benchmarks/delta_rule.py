"""Delta-rule backend benchmark (`eos.delta_scan`): forward and forward+backward time, compile time
and peak memory of the chunked WY form against the sequential reference, in one run.

    python benchmarks/delta_rule.py                   # B=4 H=4 K=V=64, T in 1k 4k 16k, 3 gates
    python benchmarks/delta_rule.py --quick           # small shapes, seconds
    python benchmarks/delta_rule.py --T 4096 --gates scalar --chunk-sizes 32 64

Times are medians over --repeats runs after compilation (wall and process CPU). Peak memory is
XLA's estimate for the compiled fwd+bwd program (arguments + outputs + temporaries). Each row runs
in a fresh process, as in benchmarks/eos_backends.py. The summary prints the reference / chunked
ratio per (gate, T) and the 1k -> 16k growth of the chunked fwd+bwd time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import time

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax import eos

GATES = ("none", "scalar", "key")


def make_inputs(gate, B, T, H, K, V, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    k = rng.normal(size=(B, T, H, K))
    args = [
        f(rng.normal(size=(B, T, H, K)) * K**-0.5),
        f(k / np.linalg.norm(k, axis=-1, keepdims=True)),
        f(rng.normal(size=(B, T, H, V))),
        f(rng.uniform(0.1, 1.0, size=(B, T, H))),
    ]
    if gate == "scalar":
        args.append(f(jax.nn.log_sigmoid(rng.normal(size=(B, T, H)) + 3)))
    elif gate == "key":
        args.append(f(jax.nn.log_sigmoid(rng.normal(size=(B, T, H, K)) + 3)))
    return args


def _median(fn, args, repeats):
    times = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return [float(x) for x in np.median(np.array(times), axis=0)]


def _compile(fn, args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    mem = compiled.memory_analysis()
    peak = None
    if mem is not None:
        total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        peak = total / 2**20
    return compiled, time.perf_counter() - start, peak


def bench_one(gate, backend, shape, chunk_size, repeats, max_gib):
    B, T, H, K, V = shape
    args = make_inputs(gate, B, T, H, K, V)

    def forward(*a):
        return eos.delta_scan(*a, backend=backend, chunk_size=chunk_size)

    def loss(*a):
        o, S = forward(*a)
        return jnp.sum(o) + jnp.sum(S)

    fwd_bwd = jax.grad(loss, argnums=tuple(range(len(args))))
    row = dict(gate=gate, backend=backend, T=T, chunk_size=chunk_size)
    fwd_c, c1, _ = _compile(forward, args)
    bwd_c, c2, peak = _compile(fwd_bwd, args)
    if peak is not None and peak > max_gib * 1024:
        return {**row, "skip": f"needs ~{peak / 1024:.1f} GiB"}
    row["fwd_ms"] = 1e3 * _median(fwd_c, args, repeats)[0]
    wall, cpu = _median(bwd_c, args, repeats)
    row |= dict(fwd_bwd_ms=1e3 * wall, fwd_bwd_cpu_ms=1e3 * cpu, compile_s=c1 + c2, peak_mib=peak)
    return row


def _fresh(job):
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(bench_one, *job).result()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--T", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--B", type=int, default=4)
    parser.add_argument("--H", type=int, default=4)
    parser.add_argument("--K", type=int, default=64)
    parser.add_argument("--V", type=int, default=64)
    parser.add_argument("--gates", nargs="+", default=list(GATES), choices=GATES)
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="+", default=[0], help="0: the backend's default"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-gib", type=float, default=12.0)
    args = parser.parse_args()
    if args.quick:
        args.T, args.B, args.H, args.K, args.V, args.repeats = [256, 1024], 2, 2, 16, 16, 2
    print(f"platform={jax.default_backend()} B={args.B} H={args.H} K={args.K} V={args.V} float32")
    print(
        "| gate | backend | chunk | T | fwd ms | fwd+bwd ms | fwd+bwd CPU ms | compile s |", end=""
    )
    print(" peak MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    for gate in args.gates:
        for T in args.T:
            jobs = [("reference", None)] + [("chunked", c or None) for c in args.chunk_sizes]
            for backend, chunk in jobs:
                shape = (args.B, T, args.H, args.K, args.V)
                row = _fresh((gate, backend, shape, chunk, args.repeats, args.max_gib))
                rows.append(row)
                label = chunk or ("default" if backend == "chunked" else "")
                head = f"| {gate} | {backend} | {label} | {T} "
                if "skip" in row:
                    print(head + f"| skip: {row['skip']} | | | | |", flush=True)
                    continue
                print(
                    head + f"| {row['fwd_ms']:.1f} | {row['fwd_bwd_ms']:.1f} "
                    f"| {row['fwd_bwd_cpu_ms']:.0f} | {row['compile_s']:.1f} "
                    f"| {row['peak_mib']:.0f} |",
                    flush=True,
                )
    print("\nreference / chunked fwd+bwd (best chunk), and chunked growth from the first T:")
    for gate in args.gates:
        line, first = [], None
        for T in args.T:
            ref = [r for r in rows if r["gate"] == gate and r["T"] == T and r["backend"] ==
                   "reference" and "skip" not in r]  # fmt: skip
            ch = [r for r in rows if r["gate"] == gate and r["T"] == T and r["backend"] ==
                  "chunked" and "skip" not in r]  # fmt: skip
            if not ch:
                continue
            best = min(r["fwd_bwd_ms"] for r in ch)
            first = first or best
            ratio = f"{ref[0]['fwd_bwd_ms'] / best:.1f}x" if ref else "ref skipped"
            line.append(f"T={T}: {ratio}, growth {best / first:.1f}x")
        print(f"  {gate}: " + "; ".join(line))


if __name__ == "__main__":
    main()

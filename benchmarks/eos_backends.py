"""EOS backend benchmark: forward and forward+backward time, compile time and peak memory.

    python benchmarks/eos_backends.py                 # B=4 H=4 K=D=64, T in 1k 4k 16k
    python benchmarks/eos_backends.py --quick         # small shapes, a few seconds
    python benchmarks/eos_backends.py --T 4096 --structures scalar k --backends reference auto
    python benchmarks/eos_backends.py --write-table   # auto's table (benchmarks/eos_table.py)
    python benchmarks/eos_backends.py --write-table --structures product full   # those classes

Times are medians over --repeats runs after compilation. Peak memory is XLA's own estimate for the
compiled program (arguments + outputs + temporaries), not a measured RSS. Rows whose estimated
memory exceeds --max-gib are skipped (printed as "skip"). Each row runs in a fresh process
(--same-process turns that off): a row that touched gigabytes (the reference or associative
backward) otherwise leaves the allocator in a state that slowed the next rows by 10-25% on CPU.
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

STRUCTURES = ("none", "scalar", "k", "d", "separable", "product", "full")


def make_inputs(
    structure: str,
    B: int,
    T: int,
    H: int,
    K: int,
    D: int,
    seed: int = 0,
    elementwise=False,
    elementwise_di=False,
):
    """Inputs of one class; `elementwise` gives a rank-5 s [B,T,H,K,D] (the elementwise read),
    `elementwise_di` a data-independent one [1,1,H,K,D] (as the layers with e_type or s_type 0)."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    def log_decay(*shape):  # logsigmoid(z)/16, the paper's default oscillation
        return jax.nn.log_sigmoid(normal(*shape)) / 16

    e, i = normal(B, T, H, K) / np.sqrt(K), normal(B, T, H, D)
    s = normal(B, T, H, K, D) if elementwise else normal(B, T, H, K)
    s = normal(1, 1, H, K, D) if elementwise_di else s
    log_o = {
        "none": lambda: 0,
        "scalar": lambda: log_decay(B, T, H, 1, 1),
        "k": lambda: log_decay(B, T, H, K, 1),
        "d": lambda: log_decay(B, T, H, 1, D),
        "separable": lambda: eos.Decay(k=log_decay(B, T, H, K), d=log_decay(B, T, H, D)),
        "full": lambda: log_decay(B, T, H, K, D),
        # Mamba's exp(Δ ⊗ A): Δ = softplus(z) / 16 per channel and step, A = -exp(z) [H, K, D].
        "product": lambda: eos.ProductDecay(
            d=jax.nn.softplus(normal(B, T, H, D)) / 16, p=-jnp.exp(normal(1, 1, H, K, D))
        ),
    }[structure]()
    return e, i, log_o, s


def _median_time(fn, args, repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds. CPU time (all threads) is the steadier figure when
    other jobs share the machine: it counts the work done, not the time spent waiting for a core."""
    times = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    wall, cpu = np.median(np.array(times), axis=0)
    return float(wall), float(cpu)


def _compile(fn, args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    peak = None
    if mem is not None:
        peak = (
            mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        ) / 2**20
    return compiled, seconds, peak


def bench_one(
    structure, backend, shape, repeats, max_gib, elementwise=False, chunk_size=None,
    elementwise_di=False,
):  # fmt: skip
    B, T, H, K, D = shape
    args = make_inputs(
        structure, B, T, H, K, D, elementwise=elementwise, elementwise_di=elementwise_di
    )
    problem = eos.problem(*args)
    try:
        chosen = eos.resolve_backend(backend, problem)
    except ValueError:
        return None

    if isinstance(args[2], int | float):  # "no decay" must stay a Python 0, not a traced array
        fixed = args[2]
        args = (args[0], args[1], args[3])

        def forward(e, i, s):
            return eos.eos_scan(e, i, fixed, s, backend=backend, chunk_size=chunk_size)
    else:

        def forward(e, i, log_o, s):
            return eos.eos_scan(e, i, log_o, s, backend=backend, chunk_size=chunk_size)

    def loss(*a):
        y, m = forward(*a)
        return jnp.sum(y) + jnp.sum(m)

    fwd_bwd = jax.grad(loss, argnums=tuple(range(len(args))))
    row = {"structure": structure, "backend": backend, "chosen": chosen, "T": T}
    row |= {"read": "elementwise" if elementwise else "vector", "K": K, "D": D, "H": H, "B": B}
    row["chunk_size"] = chunk_size
    fwd_c, compile_s, fwd_peak = _compile(forward, args)
    bwd_c, bwd_compile_s, bwd_peak = _compile(fwd_bwd, args)
    if bwd_peak is not None and bwd_peak > max_gib * 1024:
        return {**row, "skip": f"needs ~{bwd_peak / 1024:.1f} GiB"}
    row["fwd_ms"] = 1e3 * _median_time(fwd_c, args, repeats)[0]
    wall, cpu = _median_time(bwd_c, args, repeats)
    row["fwd_bwd_ms"], row["fwd_bwd_cpu_ms"] = 1e3 * wall, 1e3 * cpu
    row["compile_s"] = compile_s + bwd_compile_s
    row["peak_mib"] = bwd_peak
    return row


HEADER = (
    "| structure | backend | auto → | T | fwd ms | fwd+bwd ms | fwd+bwd CPU ms | compile s "
    "| peak MiB |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---:|"
)


def format_row(r) -> str:
    chosen = r["chosen"] if r["backend"] == "auto" else ""
    head = f"| {r['structure']} | {r['backend']} | {chosen} | {r['T']} "
    if "skip" in r:
        return head + f"| skip: {r['skip']} | | | | |"
    peak = "?" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
    return head + (
        f"| {r['fwd_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | {r['fwd_bwd_cpu_ms']:.0f} "
        f"| {r['compile_s']:.1f} | {peak} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    parser.add_argument("--T", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--B", type=int, default=4)
    parser.add_argument("--H", type=int, default=4)
    parser.add_argument("--K", type=int, default=64)
    parser.add_argument("--D", type=int, default=64)
    parser.add_argument("--structures", nargs="+", default=list(STRUCTURES), choices=STRUCTURES)
    # pallas runs interpreted on CPU (benchmarks/eos_pallas.py measures it on accelerators).
    xla_backends = [b for b in eos.BACKENDS if b != "pallas"]
    parser.add_argument("--backends", nargs="+", default=xla_backends, choices=eos.BACKENDS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-gib", type=float, default=8.0)
    parser.add_argument("--same-process", action="store_true", help="no fresh process per row")
    parser.add_argument(
        "--write-table", action="store_true", help="measure the class grid, write auto's table"
    )
    args = parser.parse_args()
    if args.write_table:
        import eos_table  # noqa: PLC0415  (benchmarks/eos_table.py)

        run = (lambda job: bench_one(*job)) if args.same_process else _in_fresh_process
        only = None if args.structures == list(STRUCTURES) else set(args.structures)
        path = eos_table.write(run, args.repeats, args.max_gib, quick=args.quick, only=only)
        print(f"wrote {path}")
        return
    if args.quick:
        args.T, args.B, args.H, args.K, args.D, args.repeats = [256, 1024], 2, 2, 32, 32, 3
    print(
        f"platform={jax.default_backend()} devices={len(jax.devices())} B={args.B} H={args.H} "
        f"K={args.K} D={args.D} float32"
    )
    print(HEADER, flush=True)
    for structure in args.structures:
        for T in args.T:
            for backend in args.backends:
                shape = (args.B, T, args.H, args.K, args.D)
                job = (structure, backend, shape, args.repeats, args.max_gib)
                row = bench_one(*job) if args.same_process else _in_fresh_process(job)
                if row is not None:
                    print(format_row(row), flush=True)


def _bench_job(job):
    return bench_one(*job)


def _in_fresh_process(job, fn=_bench_job):
    """fn(job) in a new (spawned) Python process, so rows do not share an allocator."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, job).result()


if __name__ == "__main__":
    main()

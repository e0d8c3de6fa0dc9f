"""Pallas EOS kernels against the XLA backends: forward and forward+backward time, and the
achieved fraction of the device's memory bandwidth.

    python benchmarks/eos_pallas.py                   # accelerator: B=4 H=4 K=D=64, T 1k 4k 16k
    python benchmarks/eos_pallas.py --quick           # CPU: small shapes, interpreted Pallas

On CPU Pallas runs only interpreted (an XLA loop executing the kernel step by step), so its CPU
times measure the interpreter, not the kernel. The bandwidth fraction is printed on GPU/TPU only:
bytes that must move (every input read once, every output written once; for forward+backward the
forward's traffic plus the inputs read again, dy read and one gradient per input written) divided
by the median time and the device's peak bandwidth from PEAK_GBPS.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

# Run as a script from the repository root: benchmarks/ is on sys.path.
from eos_backends import make_inputs

from lcsm_jax import eos
from lcsm_jax.eos import pallas

# Peak HBM bandwidth (GB/s, vendor datasheets), matched against `device_kind` in this order.
PEAK_GBPS = (
    ("H200", 4800),
    ("H100 PCIe", 2000),
    ("H100", 3350),  # SXM
    ("A100-SXM4-80GB", 2039),
    ("A100-SXM4-40GB", 1555),
    ("A100", 1935),  # PCIe 80GB
    ("L4", 300),
    ("TPU v6", 1640),
    ("TPU v5p", 2765),
    ("TPU v5", 819),  # v5e / v5 lite
    ("TPU v4", 1228),
)
STRUCTURES = ("k", "separable", "full")
# (label, backend, Pallas kernel or None)
METHODS = (
    ("pallas", "pallas", "auto"),
    ("pallas-scan", "pallas", "scan"),
    ("associative", "associative", None),
    ("chunked", "chunked", None),
    ("reference", "reference", None),
)


def peak_gbps(device) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, gbps in PEAK_GBPS:
        if name.lower() in kind.lower():
            return gbps
    return None


def bytes_moved(args, B: int, T: int, H: int, K: int, D: int) -> tuple[int, int]:
    """(forward, forward+backward) bytes that must cross memory, float32."""
    inputs = 4 * sum(x.size for x in jax.tree.leaves(args))
    outputs = 4 * (B * T * H * D + B * H * K * D)
    forward = inputs + outputs
    return forward, forward + 2 * inputs + 4 * B * T * H * D


def scan_fn(backend: str, kernel: str | None, chunk_size: int | None):
    def run(e, i, log_o, s):
        if backend != "pallas":
            return eos.eos_scan(e, i, log_o, s, backend=backend, chunk_size=chunk_size)
        p = eos.problem(e, i, log_o, s)
        y, m = pallas.scan_with(p, kernel=kernel, block_t=chunk_size)
        return y.astype(p.out_dtype), m

    return run


def _median_ms(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def bench_one(structure, method, shape, repeats, chunk_size):
    label, backend, kernel = method
    B, T, H, K, D = shape
    args = make_inputs(structure, B, T, H, K, D)
    problem = eos.problem(*args)
    try:
        eos.resolve_backend(backend, problem)
        if backend == "pallas" and kernel == "scan" and structure == "full":
            return None  # the same kernel as "pallas" (auto)
    except ValueError:
        return None
    forward = scan_fn(backend, kernel, chunk_size)

    def loss(*a):
        y, m = forward(*a)
        return jnp.sum(y) + jnp.sum(m)

    fwd = jax.jit(forward)
    fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
    fwd_ms, fwd_bwd_ms = _median_ms(fwd, args, repeats), _median_ms(fwd_bwd, args, repeats)
    row = {"structure": structure, "method": label, "T": T, "fwd": fwd_ms, "fwd_bwd": fwd_bwd_ms}
    peak = peak_gbps(jax.devices()[0])
    if peak is not None:
        moved = bytes_moved(args, B, T, H, K, D)
        row["bw"] = tuple(
            b / (ms * 1e-3) / (peak * 1e9)
            for b, ms in zip(moved, (fwd_ms, fwd_bwd_ms), strict=True)
        )
    return row


HEADER = (
    "| structure | method | T | fwd ms | fwd+bwd ms | fwd % peak BW | fwd+bwd % peak BW |\n"
    "|---|---|---:|---:|---:|---:|---:|"
)


def format_row(r) -> str:
    bw = " | ".join(f"{100 * x:.1f}" for x in r["bw"]) if "bw" in r else "n/a | n/a"
    head = f"| {r['structure']} | {r['method']} | {r['T']} "
    return head + f"| {r['fwd']:.2f} | {r['fwd_bwd']:.2f} | {bw} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (CPU smoke run)")
    parser.add_argument("--T", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--B", type=int, default=4)
    parser.add_argument("--H", type=int, default=4)
    parser.add_argument("--K", type=int, default=64)
    parser.add_argument("--D", type=int, default=64)
    parser.add_argument("--structures", nargs="+", default=list(STRUCTURES), choices=STRUCTURES)
    parser.add_argument("--methods", nargs="+", default=[m[0] for m in METHODS])
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.T, args.B, args.H, args.K, args.D, args.repeats = [256], 1, 2, 16, 16, 5
    device = jax.devices()[0]
    peak = peak_gbps(device)
    print(
        f"platform={jax.default_backend()} device={device.device_kind} "
        f"peak={'?' if peak is None else f'{peak} GB/s'} B={args.B} H={args.H} K={args.K} "
        f"D={args.D} float32" + (" (Pallas interpreted)" if jax.default_backend() == "cpu" else "")
    )
    print(HEADER, flush=True)
    methods = [m for m in METHODS if m[0] in args.methods]
    for structure in args.structures:
        for T in args.T:
            for method in methods:
                shape = (args.B, T, args.H, args.K, args.D)
                row = bench_one(structure, method, shape, args.repeats, args.chunk_size)
                if row is not None:
                    print(format_row(row), flush=True)


if __name__ == "__main__":
    main()

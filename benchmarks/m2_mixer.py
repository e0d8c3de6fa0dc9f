"""M2 mixer vs softmax attention vs an EOS layer: forward+backward time over sequence length.

    python benchmarks/m2_mixer.py                      # T = 512 .. 16384, B=1, M=128
    python benchmarks/m2_mixer.py --lengths 512 1024 --repeats 2 --with-monarch
    python benchmarks/m2_mixer.py --widths 128 256 512 1024 2048 --T 1024   # over model width

M2's claim is sub-quadratic in both sequence length and model width. Over width, the row
"m2_monarch_proj" is the M2 mixer with its in/out projections as order-2 Monarch matrices of
nblocks = sqrt(M) blocks (O(M^1.5) per token, where a dense projection costs O(M^2)); "m2" keeps
dense projections; the width sweep reports the exponent of time against M (M >= 256).

Each cell times jit(grad of sum(layer(x)²) w.r.t. the parameters and x), median over --repeats
runs after compilation. Cells whose compiled program needs more than --max-gib (XLA's memory
analysis) or whose row already took more than --max-seconds at a shorter length are skipped.
Rows: "m2" (Hyena filter, FFT long conv), "m2_monarch" (the same with the long conv through
Monarch DFTs; --with-monarch), "attention" (causal softmax, one head per 64 channels, XLA), and
"gla" (an EOS layer: K-wise data-dependent decay, chunked backend). The summary gives each row's
scaling exponent (least-squares slope of log time vs log T over T >= 1024) and the length where
each sub-quadratic row becomes faster than attention (log-log interpolation).

Measured on the 2-core CPU while other jobs kept its load average at 7-8 (absolute times are
slower than on an idle machine and noisy), defaults plus --with-monarch, about 6 minutes:
fwd+bwd at T = 1024 / 4096 / 16384: m2 100 / 638 / 3643 ms, m2_monarch 214 / 1208 / 9343 ms,
gla 52 / 469 / 1709 ms, attention 379 / 4720 ms (24.3 s at 8192, 16384 skipped). Scaling
exponents: m2 1.33, m2_monarch 1.35, gla 1.24, attention 1.99; faster than attention from
T ~ 670 (m2), ~ 790 (m2_monarch), ~ 520 (gla).
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.m2 import M2Config, M2Mixer


def build(row: str, M: int, max_len: int):
    rngs = nnx.Rngs(0)
    if row == "attention":
        heads = max(1, M // 64)
        return catalogue.build(
            "attention", embed_dim=M, rngs=rngs, num_heads=heads, max_len=max_len
        )
    if row == "gla":
        return catalogue.build("gla_core", embed_dim=M, rngs=rngs, num_heads=max(1, M // 64))
    long_conv = "monarch" if row == "m2_monarch" else "fft"
    structured = dict(projection="monarch", nblocks=sqrt_blocks(M)) if row.endswith("_proj") else {}
    config = M2Config(embed_dim=M, max_len=max_len, long_conv=long_conv, **structured)
    return M2Mixer(config, rngs=rngs)


def sqrt_blocks(M: int) -> int:
    """The largest power of two at most sqrt(M) that divides M: Monarch's nblocks ~ sqrt(M)."""
    nb = 1
    while (2 * nb) ** 2 <= M and M % (2 * nb) == 0:
        nb *= 2
    return nb


def _median_time(fn, args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_cell(row: str, T: int, M: int, args) -> dict:
    layer = build(row, M, max(args.lengths) if args.widths is None else T)
    graphdef, params = nnx.split(layer)
    x = jax.random.normal(jax.random.key(1), (args.B, T, M), jnp.float32)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x) ** 2)

    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
    compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    gib = None
    if mem is not None:
        used = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        gib = used / 2**30
        if gib > args.max_gib:
            return {"row": row, "T": T, "M": M, "skip": f"needs {gib:.1f} GiB"}
    ms = 1e3 * _median_time(compiled, (params, x), args.repeats)
    return {"row": row, "T": T, "M": M, "ms": ms, "compile_s": compile_s, "gib": gib}


def exponent(cells: list[dict], axis: str = "T", smallest: int = 1024) -> float | None:
    """Least-squares slope of log time against log `axis` over cells with axis >= smallest."""
    pts = [(c[axis], c["ms"]) for c in cells if "ms" in c and c[axis] >= smallest]
    if len(pts) < 2:
        return None
    logs = np.log(np.asarray(pts, np.float64))
    return float(np.polyfit(logs[:, 0], logs[:, 1], 1)[0])


def crossover(fast: list[dict], attention: list[dict]) -> str:
    """First T where `fast` beats attention, interpolated in log-log between measured lengths."""
    att = {c["T"]: c["ms"] for c in attention if "ms" in c}
    ratios = [
        (c["T"], math.log(c["ms"] / att[c["T"]])) for c in fast if "ms" in c and c["T"] in att
    ]
    if not ratios:
        return "n/a"
    if ratios[0][1] < 0:
        return f"<= {ratios[0][0]} (faster at every measured length)"
    for (t0, r0), (t1, r1) in zip(ratios, ratios[1:], strict=False):
        if r1 < 0 <= r0:
            frac = r0 / (r0 - r1)
            return f"~{math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0))):.0f}"
    return f"> {ratios[-1][0]} (attention faster at every length it fits)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2**k for k in range(9, 15)])
    parser.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=None,
        help="sweep model width M at fixed --T instead of the length sweep",
    )
    parser.add_argument("--T", type=int, default=1024, help="sequence length of the width sweep")
    parser.add_argument("--B", type=int, default=1)
    parser.add_argument("--M", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-gib", type=float, default=4.0)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--with-monarch", action="store_true")
    args = parser.parse_args()
    if args.widths is not None:
        bad = [M for M in args.widths if M < 64 or M % 64]
        if bad:
            parser.error(f"--widths must be multiples of 64 (a head per 64 channels), got {bad}")
        rows = ["m2", "m2_monarch_proj", "attention", "gla"]
        axis, points, smallest = "M", sorted(args.widths), 256
        shape = f"B={args.B}, T={args.T}"
    else:
        rows = ["m2", *(["m2_monarch"] if args.with_monarch else []), "attention", "gla"]
        axis, points, smallest = "T", sorted(args.lengths), 1024
        shape = f"B={args.B}, M={args.M}"
    print(f"{jax.devices()[0].device_kind} ({jax.default_backend()}), {shape}, f32")
    print(f"| row | {axis} | fwd+bwd ms | compile s | peak GiB |\n|---|---:|---:|---:|---:|")
    results = {row: [] for row in rows}
    for row in rows:
        for point in points:
            T, M = (args.T, point) if axis == "M" else (point, args.M)
            last = results[row][-1] if results[row] else None
            if last is not None and ("skip" in last or last["ms"] > 1e3 * args.max_seconds):
                cell = {"row": row, "T": T, "M": M, "skip": "previous point over the time budget"}
                if "skip" in last:
                    cell["skip"] = last["skip"] if "GiB" in last["skip"] else cell["skip"]
            else:
                cell = bench_cell(row, T, M, args)
            results[row].append(cell)
            if "skip" in cell:
                print(f"| {row} | {point} | skip: {cell['skip']} | | |", flush=True)
            else:
                gib = "?" if cell["gib"] is None else f"{cell['gib']:.2f}"
                print(
                    f"| {row} | {point} | {cell['ms']:.1f} | {cell['compile_s']:.1f} | {gib} |",
                    flush=True,
                )
    if axis == "M":
        print(f"\n| row | scaling exponent in M (M >= {smallest}) |\n|---|---:|")
        for row in rows:
            slope = exponent(results[row], "M", smallest)
            print(f"| {row} | {'n/a' if slope is None else f'{slope:.2f}'} |")
        return
    print(f"\n| row | scaling exponent (T >= {smallest}) | faster than attention from T |")
    print("|---|---:|---|")
    for row in rows:
        slope = exponent(results[row])
        slope_s = "n/a" if slope is None else f"{slope:.2f}"
        cross = "" if row == "attention" else crossover(results[row], results["attention"])
        print(f"| {row} | {slope_s} | {cross} |")


if __name__ == "__main__":
    main()

"""LCSM layer benchmark: forward+backward time of the grid layer for each o_type (and c_type 0).

    python benchmarks/layer_otypes.py            # B=8 T=1024 M=256 K=64, one head (the paper's)
    python benchmarks/layer_otypes.py --quick    # tiny shapes, a few seconds per row
    python benchmarks/layer_otypes.py --o-types 1 3 12 --num-heads 4

Each row times jit(grad of sum(layer(x)²) w.r.t. the parameters and x), median over --repeats
runs after compilation, and shows the decay structure the layer hands to the core and the backend
that "auto" resolves it to. e and s are data-dependent (e_type = s_type = 1), t_type 0, τ = 16.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax.layers import EOSConfig, EOSLayer

ROWS = [*(f"o{o}" for o in range(13)), "ssm"]


def _config(row: str, args) -> EOSConfig:
    sizes = dict(embed_dim=args.M, expand_dim=args.K, num_heads=args.num_heads)
    if row == "ssm":
        return EOSConfig(c_type=0, **sizes)
    return EOSConfig(o_type=int(row[1:]), **sizes)


def _median_time(fn, fn_args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*fn_args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_row(row: str, args) -> dict:
    layer = EOSLayer(_config(row, args), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (args.B, args.T, args.M), jnp.float32)
    backend = layer.resolved_backend(x)
    graphdef, params = nnx.split(layer)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x) ** 2)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    start = time.perf_counter()
    jax.block_until_ready(step(params, x))
    compile_s = time.perf_counter() - start
    seconds = _median_time(step, (params, x), args.repeats)
    return dict(
        row=row, structure=layer.structure, backend=backend, ms=1e3 * seconds, compile_s=compile_s
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=2 T=64 M=32 K=8")
    parser.add_argument("--B", type=int, default=8)
    parser.add_argument("--T", type=int, default=1024)
    parser.add_argument("--M", type=int, default=256)
    parser.add_argument("--K", type=int, default=64)
    parser.add_argument("--num-heads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--o-types", nargs="*", default=None, help="subset, e.g. 1 3 ssm")
    args = parser.parse_args()
    if args.quick:
        args.B, args.T, args.M, args.K = 2, 64, 32, 8
    rows = ROWS if args.o_types is None else [r if r == "ssm" else f"o{r}" for r in args.o_types]
    print(
        f"# EOSLayer fwd+bwd, B={args.B} T={args.T} M={args.M} K={args.K} H={args.num_heads}, "
        f"{jax.default_backend()} x{jax.device_count()}, jax {jax.__version__}"
    )
    print("| o_type | decay structure | auto backend | fwd+bwd ms | compile s |")
    print("|---|---|---|---:|---:|")
    for row in rows:
        r = bench_row(row, args)
        cells = (r["row"], r["structure"], r["backend"], f"{r['ms']:.1f}", f"{r['compile_s']:.1f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""LrcSSM: parallel Newton solve (quasi-DEER on the EOS scan) vs the sequential rollout.

    python benchmarks/lrcssm_solve.py                      # B=4 N=D=64, T = 256 .. 16k
    python benchmarks/lrcssm_solve.py --quick              # T = 256, 1024; a few seconds
    python benchmarks/lrcssm_solve.py --backends auto associative reference --grad

Times are medians over --repeats runs after compilation (compile time printed separately), for
the forward pass, or forward+backward with --grad (implicit gradient vs backprop through the
`lax.scan` rollout). "iters" is the number of Newton iterations the solve used, "max|Δ|" the
largest difference from the rollout. --scale multiplies the U(-1/√D, 1/√D) initial parameters
(larger values are more nonlinear and need more iterations).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax import lrcssm


def _median_time(fn, args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _compiled(fn, args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def _functions(backend: str, grad: bool):
    config = lrcssm.SolverConfig(backend=backend)

    def parallel(p, u):
        return lrcssm.solve(p, u, config=config)[0]

    def sequential(p, u):
        return lrcssm.rollout(p, u)

    if not grad:
        return parallel, sequential

    def loss(fn):
        return jax.grad(lambda p, u: jnp.sum(jnp.sin(fn(p, u))))

    return loss(parallel), loss(sequential)


def run(args) -> None:
    print(
        f"B={args.B} N={args.N} D={args.D} scale={args.scale} {'fwd+bwd' if args.grad else 'fwd'}"
    )
    print(f"{'T':>6} {'backend':>12} {'iters':>5} {'parallel ms':>12} {'sequential ms':>14} "
          f"{'speedup':>8} {'compile s':>10} {'max|Δ|':>9}")  # fmt: skip
    params = lrcssm.init_params(jax.random.key(args.seed), args.N, args.D)
    params = jax.tree.map(lambda a: a * args.scale, params)
    solve = jax.jit(lambda p, u: lrcssm.solve(p, u)[1].iterations)
    for T in args.T:
        u = jax.random.normal(jax.random.key(args.seed + 1), (args.B, T, args.N), jnp.float32)
        reference = jax.jit(lrcssm.rollout)(params, u)
        iterations = int(solve(params, u))
        for backend in args.backends:
            parallel, sequential = _functions(backend, args.grad)
            par, par_compile = _compiled(parallel, (params, u))
            seq, _ = _compiled(sequential, (params, u))
            t_par = _median_time(par, (params, u), args.repeats)
            t_seq = _median_time(seq, (params, u), args.repeats)
            diff = ""
            if not args.grad:
                diff = f"{float(jnp.max(jnp.abs(par(params, u) - reference))):9.1e}"
            print(
                f"{T:>6} {backend:>12} {iterations:>5} {1e3 * t_par:>12.2f} {1e3 * t_seq:>14.2f} "
                f"{t_seq / t_par:>8.2f} {par_compile:>10.2f} {diff}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--B", type=int, default=4)
    parser.add_argument("--N", type=int, default=64)
    parser.add_argument("--D", type=int, default=64)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--backends", nargs="+", default=["auto", "associative"])
    parser.add_argument("--grad", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.T, args.repeats = [256, 1024], 3
    run(args)


if __name__ == "__main__":
    main()

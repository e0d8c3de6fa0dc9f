"""What `auto`'s folds to a one-row memory (`lcsm_jax/eos/folded_read.py`) save: the same
problem with and without the fact that makes it foldable, forward+backward.

    python benchmarks/folded_read.py [--T 1024 4096] [--repeats 5]

Rows (B=4, H=4, K=D=64, float32, a data-dependent D-wise decay, grads of every input):
- "e without a time axis, vector read": e [1,1,H,K] (folded) against the same e broadcast to
  [B,T,H,K] by the caller (the K×D chunked path);
- "e without a time axis, elementwise read": a time-varying [B,T,H,K,D] s (T <= 1024: the
  array is B·T·H·K·D floats), folded against the K×D scan `auto` runs for the broadcast e;
- "fixed elementwise read": s [1,1,H,K,D] (folded) against the recurrent backend, which is what
  `auto` ran for it before the fold.
Each pair is timed in one process, interleaved, median of --repeats.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax import eos

B, H, K, D = 4, 4, 64, 64


def _inputs(T: int, read: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    s_shape = {"vector": (B, T, H, K), "elementwise": (B, T, H, K, D), "fixed": (1, 1, H, K, D)}
    log_o = -jax.nn.softplus(n(B, T, H, 1, D))
    return n(1, 1, H, K), n(B, T, H, D), log_o, n(*s_shape[read])


def _step(backend: str):
    def loss(e, i, log_o, s):
        y, m = eos.eos_scan(e, i, log_o, s, backend=backend)
        return jnp.sum(y**2) + jnp.sum(m**2)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))


def _pair(T: int, read: str, repeats: int):
    """(folded ms, unfolded ms): medians, the two calls interleaved."""
    e, i, log_o, s = _inputs(T, read)
    if read == "fixed":
        e = jnp.broadcast_to(e, (B, T, H, K))  # a full e: only the read makes it foldable
        unfolded = (_step("recurrent"), (e, i, log_o, s))
    else:
        unfolded = (_step("auto"), (jnp.asarray(np.broadcast_to(e, (B, T, H, K))), i, log_o, s))
    folded = (_step("auto"), (e, i, log_o, s))
    times = {0: [], 1: []}
    for fn, args in (folded, unfolded):
        jax.block_until_ready(fn(*args))
    for _ in range(repeats):
        for n, (fn, args) in enumerate((folded, unfolded)):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[n].append(1e3 * (time.perf_counter() - start))
    return float(np.median(times[0])), float(np.median(times[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"platform={jax.default_backend()}, B={B} H={H} K={K} D={D}, fwd+bwd medians")
    print("| row | T | folded | not folded | speedup |\n|---|---:|---:|---:|---:|")
    labels = {
        "vector": "e without a time axis, vector read",
        "elementwise": "e without a time axis, elementwise read",
        "fixed": "fixed elementwise read",
    }
    for T in args.T:
        for read, label in labels.items():
            if read == "elementwise" and T > 1024:
                continue
            folded, unfolded = _pair(T, read, args.repeats)
            print(
                f"| {label} | {T} | {folded:.1f} ms | {unfolded:.1f} ms | "
                f"{unfolded / folded:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()

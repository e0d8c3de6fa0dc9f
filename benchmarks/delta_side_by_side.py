"""The delta rule side by side with the two other JAX implementations, on this machine, one run:
`lcsm_jax.ops` against jax-linear-attention (`jla.ops.chunked`: its chunked JAX path, the one
it runs off Hopper GPUs) and deltanet-tpu (`chunk_*(fallback_scan=True)`: its pure-JAX path,
the one it runs off TPU), for DeltaNet, Gated DeltaNet (scalar gate) and KDA (per-key gate).

Both need Python >= 3.12 and jax 0.11, this project jax 0.10, so they run in their own venv:

    /root/.pyenv/versions/3.12.1/bin/python -m venv /tmp/sidevenv
    /tmp/sidevenv/bin/pip install jax-linear-attention==0.1.0 deltanet-tpu==0.3.0
    python benchmarks/delta_side_by_side.py --other-python /tmp/sidevenv/bin/python

Every (gate, T, library) row is a fresh process (all on the same inputs, drawn from one seed),
interleaved: for each (gate, T) the libraries run one after another, `--rounds` times, and the
table keeps each library's median. Each process first checks its outputs at T = 200 against
this project's float64 NumPy loop of the equations (the worst relative error is printed), then
times forward + backward (the gradient of sum(o * w) with respect to q, k, v, beta and g) at
B=4 H=4 K=V=64 in float32, median over --repeats after compilation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GATES = ("none", "scalar", "key")
LIBRARIES = ("lcsm_jax", "jax-linear-attention", "deltanet-tpu")


def inputs(gate: str, B: int, T: int, H: int, K: int, V: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(B, T, H, K))
    arrays = {
        "q": rng.normal(size=(B, T, H, K)) * K**-0.5,
        "k": k / np.linalg.norm(k, axis=-1, keepdims=True),
        "v": rng.normal(size=(B, T, H, V)),
        "beta": rng.uniform(0.1, 1.0, size=(B, T, H)),
        "w": rng.normal(size=(B, T, H, V)),
    }
    if gate == "scalar":
        arrays["g"] = -np.log1p(np.exp(-(rng.normal(size=(B, T, H)) + 3)))
    elif gate == "key":
        arrays["g"] = -np.log1p(np.exp(-(rng.normal(size=(B, T, H, K)) + 3)))
    return arrays


def oracle(a: dict, scale: float) -> np.ndarray:
    """float64 loop: S_t = S_{t-1} diag(α_t)(I - β_t k_t k_tᵀ) + β_t v_t k_tᵀ written as the
    K×V state S ← α ⊙ S, S ← S + β k (v - Sᵀ k)ᵀ, o_t = scale · Sᵀ q_t."""
    B, T, H, K = a["q"].shape
    S = np.zeros((B, H, K, a["v"].shape[-1]))
    out = np.zeros(a["v"].shape)
    for t in range(T):
        if "g" in a:
            g = a["g"][:, t]
            S = S * np.exp(g if g.ndim == 3 else g[..., None])[..., None]
        k, v, beta = a["k"][:, t], a["v"][:, t], a["beta"][:, t]
        err = v - np.einsum("bhkv,bhk->bhv", S, k)
        S = S + np.einsum("bhk,bhv->bhkv", k, beta[..., None] * err)
        out[:, t] = scale * np.einsum("bhkv,bhk->bhv", S, a["q"][:, t])
    return out


def _op(library: str, gate: str):
    """fn(q, k, v, beta, g) -> o [B, T, H, V] for one library."""
    if library == "lcsm_jax":
        from lcsm_jax import ops

        fns = {"none": ops.delta_rule, "scalar": ops.gated_delta_rule, "key": ops.kda}
        if gate == "none":
            return lambda q, k, v, beta, g: fns[gate](q, k, v, beta)[0]
        return lambda q, k, v, beta, g: fns[gate](q, k, v, g, beta)[0]
    if library == "jax-linear-attention":
        from jla.ops import chunked

        fns = {"none": chunked.delta_rule, "scalar": chunked.gated_delta_rule, "key": chunked.kda}
        if gate == "none":
            return lambda q, k, v, beta, g: fns[gate](q, k, v, beta)[0]
        return lambda q, k, v, beta, g: fns[gate](q, k, v, g, beta)[0]
    if library == "deltanet-tpu":
        import deltanet_tpu.variants as dt

        opts = dict(fallback_scan=True, precision="fp32")
        if gate == "none":
            return lambda q, k, v, beta, g: dt.chunk_delta_rule(q, k, v, beta, **opts)
        fn = dt.chunk_gdn if gate == "scalar" else dt.chunk_kda
        return lambda q, k, v, beta, g: fn(q, k, v, g, beta, **opts)
    raise ValueError(f"unknown library {library!r}; known: {', '.join(LIBRARIES)}")


def worker(args) -> dict:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    fn = _op(args.library, args.gate)

    def arrays(T):
        a = inputs(args.gate, args.B, T, args.H, args.K, args.V)
        return a, [jnp.asarray(a[n], jnp.float32) for n in ("q", "k", "v", "beta")] + [
            jnp.asarray(a["g"], jnp.float32) if "g" in a else None
        ]

    small, x = arrays(200)
    want = oracle(small, args.K**-0.5)
    got = np.asarray(jax.jit(fn)(*x), np.float64)
    error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))

    a, x = arrays(args.T)
    w = jnp.asarray(a["w"], jnp.float32)
    wrt = (0, 1, 2, 3) if x[4] is None else (0, 1, 2, 3, 4)
    step = jax.jit(jax.grad(lambda *x: jnp.sum(fn(*x) * w), argnums=wrt))
    start = time.perf_counter()
    jax.block_until_ready(step(*x))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(*x))
        times.append(time.perf_counter() - start)
    return dict(error=error, ms=1e3 * statistics.median(times), compile_s=compile_s,
                jax=jax.__version__)  # fmt: skip


def _run(library, gate, T, args) -> dict:
    python = sys.executable if library == "lcsm_jax" else args.other_python
    command = [python, str(Path(__file__).resolve()), "--worker", "--library", library]
    command += ["--gate", gate, "--T", str(T), "--repeats", str(args.repeats)]
    command += ["--B", str(args.B), "--H", str(args.H), "--K", str(args.K), "--V", str(args.V)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return dict(failed=done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--other-python", default="/tmp/sidevenv/bin/python")
    p.add_argument("--gates", nargs="+", default=list(GATES), choices=GATES)
    p.add_argument("--T", nargs="+", type=int, default=[1024, 4096])
    p.add_argument("--B", type=int, default=4)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--K", type=int, default=64)
    p.add_argument("--V", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--library", help=argparse.SUPPRESS)
    p.add_argument("--gate", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.T = args.T[0]
        print(json.dumps(worker(args)))
        return
    print(f"B={args.B} H={args.H} K={args.K} V={args.V} float32, fwd+bwd ms (median of "
          f"{args.repeats} runs, median over {args.rounds} interleaved rounds); error: worst "
          "|o - oracle| / max|oracle| at T = 200 against a float64 loop", flush=True)  # fmt: skip
    head = " | ".join(f"{lib} ms | error" for lib in args.libraries)
    ratios = " | ".join(f"{lib} / lcsm_jax" for lib in args.libraries[1:])
    print(f"| gate | T | {head} | {ratios} |")
    print("|---|---:|" + "---:|---:|" * len(args.libraries) + "---:|" * (len(args.libraries) - 1))
    for gate in args.gates:
        for T in args.T:
            runs = {lib: [] for lib in args.libraries}
            for _ in range(args.rounds):
                for lib in args.libraries:
                    runs[lib].append(_run(lib, gate, T, args))
            cells, ms = [], {}
            for lib in args.libraries:
                good = [r for r in runs[lib] if "ms" in r]
                if not good:
                    cells.append(f"failed: {runs[lib][0]['failed'][:60]} | ")
                    continue
                ms[lib] = statistics.median(r["ms"] for r in good)
                cells.append(f"{ms[lib]:.0f} | {max(r['error'] for r in good):.1e}")
            ratio = [
                f"{ms[lib] / ms['lcsm_jax']:.2f}x" if lib in ms and "lcsm_jax" in ms else "–"
                for lib in args.libraries[1:]
            ]
            print(f"| {gate} | {T} | " + " | ".join(cells) + " | " + " | ".join(ratio) + " |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

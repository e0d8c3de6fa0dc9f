"""The ratios of issue 14: non-separable decays, the Mamba block and o_types 6-9 against their
separable counterparts, and `auto` against the reference.

    python benchmarks/ratios.py --repeats 3
    python benchmarks/ratios.py --rows 'elementwise|o_type'   # those rows and their baselines

Every row runs forward+backward in a fresh process (median of --repeats after compilation, the
timing and process helpers of `eos_backends.py`); the table prints each time and its ratio to
the row it is compared with.

Core rows: B=4, H=4, K=D=64, T=4096, float32, grads of every input. "product" is Mamba's
exp(Δ ⊗ A) given factored (`eos.ProductDecay`); "full" is a data-dependent [B,T,H,K,D] log-decay
array; the elementwise read is a scalar decay with a data-independent K×D s (as the layers with
e_type or s_type 0 make it). Blocks: the catalogue's `mamba` and `gla` at d_model 256, B=4.
Layers: the grid's EOSLayer (B=8, M=256, K=64, one head, T=1024), o_types 6-9 and the SSM
(c_type 0) against o_type 1.
"""

from __future__ import annotations

import argparse
import re

import eos_backends  # benchmarks/eos_backends.py
import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.layers import EOSConfig, EOSLayer

CORE = (4, 4, 64, 64)  # B, H, K, D


def _module_ms(module, x, repeats: int) -> float:
    graphdef, params = nnx.split(module)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x) ** 2)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax.block_until_ready(step(params, x))
    return 1e3 * eos_backends._median_time(step, (params, x), repeats)[0]


def block_ms(name: str, T: int, repeats: int) -> float:
    B, M = 4, 256
    block = catalogue.build(name, embed_dim=M, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (B, T, M), jnp.float32)
    return _module_ms(block, x, repeats)


def layer_ms(row: str, T: int, repeats: int, **options) -> float:
    sizes = dict(embed_dim=256, expand_dim=64, num_heads=1, **options)
    config = EOSConfig(c_type=0, **sizes) if row == "ssm" else EOSConfig(o_type=int(row), **sizes)
    x = jax.random.normal(jax.random.key(1), (8, T, 256), jnp.float32)
    return _module_ms(EOSLayer(config, rngs=nnx.Rngs(0)), x, repeats)


def core_ms(structure: str, backend: str, T: int, repeats: int, elementwise_di=False) -> float:
    B, H, K, D = CORE
    row = eos_backends.bench_one(
        structure, backend, (B, T, H, K, D), repeats, 64.0, elementwise_di=elementwise_di
    )
    return row["fwd_bwd_ms"]


def rows(repeats: int):
    """(label, job, baseline label): a job is (function name, args)."""
    core = [("scalar decay, auto", ("core_ms", ("scalar", "auto", 4096, repeats)), None)]
    core += [
        ("full K×D decay as ProductDecay (Mamba's Δ⊗A), auto",
         ("core_ms", ("product", "auto", 4096, repeats)), "scalar decay, auto"),
        ("full K×D decay as a [B,T,H,K,D] array, auto",
         ("core_ms", ("full", "auto", 4096, repeats)), "scalar decay, auto"),
        ("scalar decay, elementwise read (fixed K×D s), auto",
         ("core_ms", ("scalar", "auto", 4096, repeats, True)), "scalar decay, auto"),
    ]  # fmt: skip
    blocks = []
    for T in (1024, 4096):
        blocks += [
            (f"gla block T={T}", ("block_ms", ("gla", T, repeats)), None),
            (f"mamba block T={T}", ("block_ms", ("mamba", T, repeats)), f"gla block T={T}"),
        ]
    layers = [("layer o_type 1", ("layer_ms", ("1", 1024, repeats)), None)]
    for row in ("6", "7", "8", "9", "ssm"):
        label = "layer c_type 0 (SSM)" if row == "ssm" else f"layer o_type {row}"
        layers.append((label, ("layer_ms", (row, 1024, repeats)), "layer o_type 1"))
    # A data-independent e makes the read a fixed K×D one: with the D-wise o_type 2 `auto` folds
    # it into a one-row memory (eos/folded_read.py); "recurrent" is the scan it ran before.
    for backend in ("recurrent", "auto"):
        label = f"layer e_type 0, o_type 2, {backend}"
        base = None if backend == "recurrent" else "layer e_type 0, o_type 2, recurrent"
        layers.append(
            (label, ("layer_ms", ("2", 1024, repeats, {"e_type": 0, "backend": backend})), base)
        )
    auto = []
    for structure in ("scalar", "k"):
        auto += [
            (f"{structure}: auto T=4096", ("core_ms", (structure, "auto", 4096, repeats)), None),
            (f"{structure}: reference T=4096",
             ("core_ms", (structure, "reference", 4096, repeats)), f"{structure}: auto T=4096"),
            (f"{structure}: auto T=1024", ("core_ms", (structure, "auto", 1024, repeats)), None),
            (f"{structure}: auto T=16384",
             ("core_ms", (structure, "auto", 16384, repeats)), f"{structure}: auto T=1024"),
        ]  # fmt: skip
    return core + blocks + layers + auto


def run_job(job):
    name, args = job
    options = args[-1] if isinstance(args[-1], dict) else {}
    args = args[:-1] if options else args
    return {"core_ms": core_ms, "block_ms": block_ms, "layer_ms": layer_ms}[name](*args, **options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--rows", default="", help="regex: only the rows whose label matches (and their baselines)"
    )
    args = parser.parse_args()
    repeats = args.repeats
    table = rows(repeats)
    wanted = {label for label, _, _ in table if re.search(args.rows, label)}
    wanted |= {base for label, _, base in table if label in wanted and base is not None}
    print(f"platform={jax.default_backend()}, fwd+bwd medians of {repeats}, fresh process per row")
    print("| row | fwd+bwd ms | compared with | ratio |\n|---|---:|---|---:|", flush=True)
    seen = {}
    for label, job, base in table:
        if label not in wanted:
            continue
        ms = seen[label] = eos_backends._in_fresh_process(job, run_job)
        ratio = "" if base is None else f"{ms / seen[base]:.2f}x"
        print(f"| {label} | {ms:.1f} | {base or ''} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()

"""Sequence parallelism benchmark: one long sequence through `eos_scan` (fwd+bwd) unsplit and with
T split over N fake CPU devices (`sequence_axis`, inside shard_map), in one run.

    python benchmarks/sequence_parallel.py                      # T 16k 64k 256k, N 1 2 4 8
    python benchmarks/sequence_parallel.py --T 4096 --devices 1 4 --quick

Each row runs in a fresh process with `--xla_force_host_platform_device_count=N`. Memory per
device is XLA's estimate for the compiled fwd+bwd program (arguments + outputs + temporaries of
one device's shard). Fake devices share this machine's cores, so the wall time measures the
split's overhead (two local scans and the all-gather), not a speed-up: on N real devices each
device runs its 1/N of the work at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROW = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from lcsm_jax import eos
T, n, B, H, K, D, backend, repeats = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
f32 = lambda x: jnp.asarray(x, jnp.float32)
e, i, s = (f32(rng.normal(size=(B, T, H, d)) * d**-0.5) for d in (K, D, K))
lo = f32(-np.logaddexp(0.0, rng.normal(size=(B, T, H, K, 1)) - 2))

def loss(e, i, lo, s):
    y, m = eos.eos_scan(e, i, lo, s, backend=backend)
    return jnp.sum(y * y) + jnp.sum(m)

grad = jax.grad(loss, argnums=(0, 1, 2, 3))
args = (e, i, lo, s)
if n > 1:
    mesh = Mesh(np.array(jax.devices()[:n]), ("seq",))
    args = tuple(jax.device_put(x, NamedSharding(mesh, P(None, "seq"))) for x in args)
    def split(*a):
        with eos.sequence_parallel(mesh, "seq"):
            return grad(*a)
    fn = split
else:
    fn = grad
start = time.perf_counter()
compiled = jax.jit(fn).lower(*args).compile()
compile_s = time.perf_counter() - start
m = compiled.memory_analysis()
per_device = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20
times = []
for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
print(json.dumps(dict(ms=1e3 * float(np.median(times)), mib=per_device, compile_s=compile_s)))
"""


def run_row(T, n, args):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
    config = [T, n, args.B, args.H, args.K, args.D, args.backend, args.repeats]
    out = subprocess.run(
        [sys.executable, "-c", ROW, json.dumps(config)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[16384, 65536, 262144])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--B", type=int, default=1)
    parser.add_argument("--H", type=int, default=2)
    parser.add_argument("--K", type=int, default=16)
    parser.add_argument("--D", type=int, default=16)
    parser.add_argument("--backend", default="chunked")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    print(
        f"eos_scan fwd+bwd, K-wise decay, backend={args.backend}, B={args.B} H={args.H} "
        f"K={args.K} D={args.D}, float32; N fake CPU devices sharing this machine's cores"
    )
    print(
        "| T | devices | T per device | fwd+bwd ms | vs 1 device | MiB per device | vs 1 device |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for T in args.T:
        base = None
        for n in args.devices:
            row = run_row(T, n, args)
            if "error" in row:
                print(f"| {T} | {n} | {T // n} | error: {row['error'][:80]} | | | |", flush=True)
                continue
            base = base or row
            print(
                f"| {T} | {n} | {T // n} | {row['ms']:.0f} | {row['ms'] / base['ms']:.2f}x "
                f"| {row['mib']:.1f} | {row['mib'] / base['mib']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Every sharding decision of the project: the device mesh and the rules for params and batches.

The mesh has axes ("data", "fsdp", "seq") over all devices of all hosts. Parameters (and the
optimizer moments, which share their shapes) are sharded along "fsdp" on their largest dimension
that the axis divides, and replicated otherwise (so replicated over "data" and "seq"). The batch
dimension is split over "data" and "fsdp" (fully sharded data parallelism), and the time dimension
over "seq" (sequence parallelism: every EOS and delta-rule scan of the model traced in a step runs
with T split over "seq", `eos.sequence_parallel`; the rest of the model follows by XLA's SPMD
partitioner). With seq = 1 (the default) nothing is split over time.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcsm_jax import eos

AXES = ("data", "fsdp", "seq")
BATCH_AXES = ("data", "fsdp")
BATCH = P(BATCH_AXES)
# Leaves smaller than this stay replicated: sharding them saves nothing and costs collectives.
MIN_SHARDED_SIZE = 2**10


def make_mesh(fsdp: int = 1, num_devices: int = 0, seq: int = 1) -> Mesh:
    """A (data, fsdp, seq) mesh over the first `num_devices` devices (0: all, on all hosts)."""
    devices = jax.devices()
    if not 0 <= num_devices <= len(devices):
        raise ValueError(f"mesh.num_devices={num_devices} must be in [0, {len(devices)}]")
    devices = devices[:num_devices] if num_devices else devices
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} must be >= 1 and divide the {n} devices")
    if seq < 1 or n % (fsdp * seq):
        raise ValueError(f"mesh.seq={seq} must be >= 1, with fsdp·seq dividing the {n} devices")
    return Mesh(np.array(devices).reshape(n // (fsdp * seq), fsdp, seq), AXES)


def batch_devices(mesh: Mesh) -> int:
    """How many ways the batch dimension is split (data × fsdp)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def leaf_spec(shape: tuple[int, ...], fsdp: int) -> P:
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < MIN_SHARDED_SIZE:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def tree_shardings(abstract_tree, mesh: Mesh):
    """NamedShardings for a tree of arrays / ShapeDtypeStructs by the rule above."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(x.shape, fsdp)), abstract_tree)


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """B over data × fsdp and, for arrays with a time axis (ndim >= 2), T over seq."""
    return NamedSharding(mesh, P(BATCH_AXES, "seq") if ndim >= 2 else BATCH)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh):
    """Places a global host batch (identical on every host) onto the mesh: B over data × fsdp,
    T over seq."""
    n, n_seq = batch_devices(mesh), mesh.shape["seq"]
    for name, x in batch.items():
        if x.shape[0] % n:
            raise ValueError(f"batch '{name}' of size {x.shape[0]} does not split over {n} devices")
        if x.ndim >= 2 and x.shape[1] % n_seq:
            raise ValueError(
                f"batch '{name}' of length {x.shape[1]} does not split over mesh.seq={n_seq}"
            )
    return {
        name: jax.make_array_from_callback(
            x.shape, batch_sharding(mesh, x.ndim), lambda idx, x=x: x[idx]
        )
        for name, x in batch.items()
    }


def jit_batch_step(step, mesh: Mesh, first_shardings, out_shardings, **jit_kwargs):
    """`jax.jit` of `step(first, batch)`: `first` (state or params) with `first_shardings`, the
    batch as `put_batch` placed it, and the step traced inside the mesh's sequence parallelism."""

    def traced(first, batch):
        with eos.sequence_parallel(mesh, "seq", BATCH_AXES):
            return step(first, batch)

    return jax.jit(
        traced, in_shardings=(first_shardings, None), out_shardings=out_shardings, **jit_kwargs
    )

"""Every sharding decision of the project: the device mesh and the rules for params and batches.

The mesh has axes ("data", "fsdp") over all devices of all hosts. Parameters (and the optimizer
moments, which share their shapes) are sharded along "fsdp" on their largest dimension that the
axis divides, and replicated otherwise. The batch dimension is split over both axes (fully sharded
data parallelism: every device sees a different slice of the batch).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp")
BATCH = P(AXES)
# Leaves smaller than this stay replicated: sharding them saves nothing and costs collectives.
MIN_SHARDED_SIZE = 2**10


def make_mesh(fsdp: int = 1, num_devices: int = 0) -> Mesh:
    """A (data, fsdp) mesh over the first `num_devices` devices (0: all, on all hosts)."""
    devices = jax.devices()
    if not 0 <= num_devices <= len(devices):
        raise ValueError(f"mesh.num_devices={num_devices} must be in [0, {len(devices)}]")
    devices = devices[:num_devices] if num_devices else devices
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} must be >= 1 and divide the {n} devices")
    return Mesh(np.array(devices).reshape(n // fsdp, fsdp), AXES)


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


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, BATCH)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh):
    """Places a global host batch (identical on every host) onto the mesh, sharded on BATCH."""
    sharding = batch_sharding(mesh)
    n = mesh.devices.size
    for name, x in batch.items():
        if x.shape[0] % n:
            raise ValueError(f"batch '{name}' of size {x.shape[0]} does not split over {n} devices")
    return {
        name: jax.make_array_from_callback(x.shape, sharding, lambda idx, x=x: x[idx])
        for name, x in batch.items()
    }

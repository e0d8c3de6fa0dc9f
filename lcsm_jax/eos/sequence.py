"""Sequence (context) parallelism: one sequence split over a mesh axis, inside `jax.shard_map`.

Each device holds one block of T. The recurrence is affine in the memory, so a block maps the
memory that enters it to

    EOS:         m_out = A ⊙ m_in + b,   A = Π_t o_t over the block (0 if a segment restarts in it)
    delta rule:  S_out = M S_in + b,     M = Π_t (I - β_t k_t k_tᵀ) Diag(α_t), K×K

and b is the block scanned from a zero memory. The split scan then runs in three steps:

1. Every device summarises its block: b by scanning it from zero; A from the block's summed
   log-decays (complex64 phases summed exactly in fixed point, `log_sums.exact_phase`); M by
   scanning the block from the identity with v = 0.
2. One `all_gather` over the axis brings every block's (A, b) to every device: P·K·D numbers per
   head and batch row, whatever T is. Each device folds the summaries of the blocks before its
   own, from the global initial state, into the memory entering its block; folding all of them
   gives the global final state, the same on every device.
3. Every device scans its block again from the memory that entered it (zero where a segment
   starts on the cut: the previous device's last segment id arrives by one `ppermute`).

Why an all-gather of summaries and not a ring of `ppermute`s: the ring needs P - 1 sequential
hops before the last device can start its second pass; the all-gather is one collective of the
same O(P·K·D) size, after which each device does its own O(P) fold locally. The cost is two local
scans (three for the delta rule) instead of one, for P-fold less time and activation memory per
device. Gradients need nothing special: the collectives are differentiable, so the memories'
cotangents travel back across devices through the transposed all-gather.

Models need no change to use it: inside `sequence_parallel(mesh, axis, batch_axes)` (which the
training loop enters when its mesh has a `seq` axis), every `eos_scan` / `delta_scan` traced
outside a shard_map wraps itself in one, T split over `axis` and B over `batch_axes`. The
token-mixing pieces around the scans (projections, short convolutions, norms) stay under XLA's
SPMD partitioner, which exchanges the halo a convolution needs across the cut by itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from lcsm_jax.eos import log_sums
from lcsm_jax.eos.inputs import vary_like, varying_axes


def axis_position(axis_name):
    """(number of devices, this device's index) along `axis_name`, with a clear error outside
    a `jax.shard_map` that binds it."""
    try:
        return jax.lax.axis_size(axis_name), jax.lax.axis_index(axis_name)
    except (NameError, KeyError, ValueError) as err:
        raise ValueError(
            f"sequence_axis={axis_name!r} is not a mesh axis bound here: call the scan inside "
            f"jax.shard_map over a mesh with an axis {axis_name!r}, with T split over it"
        ) from err


def cut_restarts(segment_ids, axis_name, size, index):
    """[B] bool: True where this block's first token starts a new segment (its id differs from
    the previous device's last one); None without segment ids."""
    if segment_ids is None:
        return None
    ids = jnp.asarray(segment_ids)
    shift = [(j, j + 1) for j in range(size - 1)]
    previous = jax.lax.ppermute(ids[:, -1], axis_name, shift)  # device 0 receives zeros
    return (index > 0) & (ids[:, 0] != previous)


_total = log_sums.exact_phase(lambda log: jnp.sum(log, axis=1))


def _summed(log, B, T):
    """Σ_t of a log-decay of shape [b, t, h, ...] (size-1 dims broadcast) -> [B, h, ...]."""
    return _total(jnp.broadcast_to(log, (B, T) + log.shape[2:]))


def block_decay(problem, restart):
    """A [B, H, K, D]: the block's product of oscillations, 0 for rows where a segment restarts
    inside the block or on its first token (`restart` [B] or None)."""
    B, T, H, K = problem.e.shape
    D = problem.i.shape[-1]
    log = jnp.zeros((B, 1, 1, 1), problem.e.dtype)
    if problem.lo is not None:
        log = log + _summed(problem.lo, B, T)
    if problem.lp is not None:
        log = log + _summed(problem.lp.log(), B, T)
    if problem.lk is not None:
        log = log + _summed(problem.lk, B, T)[..., :, None]
    if problem.ld is not None:
        log = log + _summed(problem.ld, B, T)[..., None, :]
    dtype = problem.m0.dtype if problem.m0 is not None else problem.e.dtype
    A = jnp.broadcast_to(jnp.exp(log).astype(dtype), (B, H, K, D))
    cut = jnp.zeros((B,), bool)
    if problem.reset is not None:
        cut = cut | jnp.any(problem.reset, axis=1)
    if restart is not None:
        cut = cut | restart
    return jnp.where(cut[:, None, None, None], jnp.zeros_like(A), A)


def entering_and_final(transition, apply, offset, m0, axis_name, index):
    """Gathers every block's (transition, offset) and folds them from m0: returns (the memory
    entering this device's block, the global final memory)."""
    transitions = jax.lax.all_gather(transition, axis_name, to="invarying")
    offsets = jax.lax.all_gather(offset, axis_name, to="invarying")
    m0 = vary_like(m0, transitions, offsets)

    def fold(m, block):
        T_j, b_j = block
        return apply(T_j, m) + b_j, m

    final, entering = jax.lax.scan(fold, m0, (transitions, offsets))
    return entering[index], final


def split_eos(problem, run, axis_name, segment_ids):
    """`run(problem) -> (y, final)` on the local block, made exact for the whole sequence."""
    size, index = axis_position(axis_name)
    restart = cut_restarts(segment_ids, axis_name, size, index)
    _, b = run(dataclasses.replace(problem, m0=None))
    A = block_decay(problem, restart)
    m0 = problem.m0 if problem.m0 is not None else jnp.zeros(b.shape, b.dtype)
    m_in, final = entering_and_final(A, jnp.multiply, b, m0.astype(b.dtype), axis_name, index)
    if restart is not None:
        m_in = jnp.where(restart[:, None, None, None], jnp.zeros_like(m_in), m_in)
    y, _ = run(dataclasses.replace(problem, m0=m_in))
    return y, final


def split_delta(problem, run, axis_name, segment_ids):
    """The same for the delta rule, whose block transition M is a K×K matrix: M is the state
    after scanning the block from the identity with v = 0 (the map is linear in S)."""
    if problem.per_segment:
        raise ValueError(
            "delta_scan: sequence_axis does not support segment_initial_states, num_segments or "
            "return_segment_states (per-segment states); pass segment_ids alone"
        )
    size, index = axis_position(axis_name)
    restart = cut_restarts(segment_ids, axis_name, size, index)
    B, T, H, K = problem.k.shape
    _, b = run(problem._replace(h0=None))
    eye = jnp.broadcast_to(jnp.eye(K, dtype=b.dtype), (B, H, K, K))
    _, M = run(problem._replace(v=jnp.zeros_like(problem.k), h0=eye))
    if restart is not None:
        M = jnp.where(restart[:, None, None, None], jnp.zeros_like(M), M)
    apply = lambda M_j, S: jnp.einsum(  # noqa: E731
        "bhkj,bhjv->bhkv", M_j, S, precision=jax.lax.Precision.HIGHEST
    )
    S0 = problem.h0 if problem.h0 is not None else jnp.zeros(b.shape, b.dtype)
    S_in, final = entering_and_final(M, apply, b, S0.astype(b.dtype), axis_name, index)
    if restart is not None:
        S_in = jnp.where(restart[:, None, None, None], jnp.zeros_like(S_in), S_in)
    o, _ = run(problem._replace(h0=S_in))
    return o, final


@dataclasses.dataclass(frozen=True)
class SequenceMesh:
    mesh: Any
    axis: str
    batch_axes: tuple[str, ...]


_CONTEXT: contextvars.ContextVar[SequenceMesh | None] = contextvars.ContextVar(
    "lcsm_sequence_parallel", default=None
)


@contextlib.contextmanager
def sequence_parallel(mesh, axis: str = "seq", batch_axes=()):
    """Within this context, every `eos_scan` and `delta_scan` traced outside a shard_map splits
    T over the mesh axis `axis` (and B over `batch_axes`) by wrapping itself in `jax.shard_map`.
    A mesh whose `axis` has size 1 changes nothing."""
    if axis not in mesh.shape:
        raise ValueError(f"sequence_parallel: the mesh has no axis {axis!r} ({dict(mesh.shape)})")
    active = SequenceMesh(mesh, axis, tuple(batch_axes)) if mesh.shape[axis] > 1 else None
    token = _CONTEXT.set(active)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current() -> SequenceMesh | None:
    return _CONTEXT.get()


def varies(*xs) -> bool:
    """True inside a shard_map: some input varies over a mesh axis."""
    return any(varying_axes(x) for x in xs if x is not None)


def _spec(x, ctx: SequenceMesh, timed: bool):
    """Batch dims over the batch axes, the time axis (1) over the sequence axis; size-1
    (broadcast) dims replicated. A `Decay` gets one spec per factor."""
    if x is None or isinstance(x, int | float):
        return None
    if hasattr(x, "k") and hasattr(x, "d"):  # a Decay
        return type(x)(k=_spec(x.k, ctx, timed), d=_spec(x.d, ctx, timed))
    shape = jnp.shape(x)
    batch = ctx.batch_axes if (ctx.batch_axes and shape and shape[0] > 1) else None
    if timed and len(shape) > 1 and shape[1] > 1:
        return P(batch, ctx.axis)
    return P(batch)


def wrapped(fn, ctx: SequenceMesh, timed, state, what: str):
    """Runs `fn(*timed, *state, sequence_axis=...)` under shard_map over `ctx` and returns
    (outputs over T, final state): timed inputs are [B, T, ...] (or broadcast), state [B, ...]."""
    sizes = ctx.mesh.shape
    n_seq = sizes[ctx.axis]
    n_batch = math.prod(sizes[a] for a in ctx.batch_axes)
    # B and T from the largest timed inputs (any of them may be broadcast over B or T).
    shapes = [x.shape for x in timed if len(getattr(x, "shape", ())) >= 2]
    B, T = max(s[0] for s in shapes), max(s[1] for s in shapes)
    if T % n_seq:
        raise ValueError(
            f"{what}: sequence parallelism needs T divisible by the {ctx.axis!r} axis: T={T}, "
            f"{ctx.axis}={n_seq}"
        )
    if B % n_batch:
        raise ValueError(f"{what}: B={B} does not split over the batch axes {ctx.batch_axes}")
    literal = [isinstance(x, int | float) or x is None for x in (*timed, *state)]
    args = [x for x, lit in zip((*timed, *state), literal, strict=True) if not lit]
    specs = [_spec(x, ctx, True) for x in timed] + [_spec(x, ctx, False) for x in state]
    specs = [sp for sp, lit in zip(specs, literal, strict=True) if not lit]

    def body(*arrays):
        it = iter(arrays)
        full = [x if lit else next(it) for x, lit in zip((*timed, *state), literal, strict=True)]
        return fn(*full, sequence_axis=ctx.axis)

    batch = ctx.batch_axes or None
    mapped = jax.shard_map(
        body,
        mesh=ctx.mesh,
        in_specs=tuple(specs),
        out_specs=(P(batch, ctx.axis), P(batch)),
    )
    return mapped(*args)

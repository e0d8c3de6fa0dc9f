"""Validation and normalisation of EOS inputs into one canonical `Problem`.

Every backend consumes a `Problem`: arrays already cast to the accumulation dtype (float32, or
complex64 for complex inputs; float64 / complex128 for float64 / complex128 inputs) and the
oscillation reduced to its structure, so backends never see user-facing shapes, dtypes or the
`Decay` wrapper. A `Problem` is a pytree whose leaves are its arrays; `structure` and `out_dtype`
are static metadata, so it passes through `jax.jit` as is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax.eos.product import FUNCTIONS, ProductDecay, ProductLog

Array = jax.Array

# Oscillation structures, from cheapest to most general. PRODUCT is a full K×D decay given by
# its factors (`ProductDecay`): never materialised by the sequential backends.
NONE, SCALAR, KWISE, DWISE, SEPARABLE, PRODUCT, FULL = (
    "none", "scalar", "k", "d", "separable", "product", "full"
)  # fmt: skip
STRUCTURES = (NONE, SCALAR, KWISE, DWISE, SEPARABLE, PRODUCT, FULL)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Decay:
    """A separable log-oscillation: ``log o[r, c] = k[r] + d[c]``.

    ``k`` broadcasts to [B, T, H, K] and ``d`` to [B, T, H, D]; either may be None (no factor).
    Size-1 dims broadcast, so ``Decay(k=lam_H[:, None])`` with ``lam_H`` of shape [H] is a fixed
    scalar decay per head.
    """

    k: Any = None
    d: Any = None


_STATIC = {"static": True}  # a pytree meta field of `register_dataclass`


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Problem:
    """Canonical EOS problem (accumulation dtype throughout).

    e [B,T,H,K]; i [B,T,H,D]; s [B,T,H,K] (vector read) or [b,t,h,K|1,D|1] (elementwise read);
    lk [b,t,h,K|1] and ld [b,t,h,D|1] (separable log decay, either None) or lo [b,t,h,K|1,D|1]
    (full log decay) or lp (a factored full decay, `ProductLog`, structure PRODUCT); reset [B,T]
    bool (memory restarts at t) or None; m0 [B,H,K,D] or None.
    Static: `structure` (one of STRUCTURES), `out_dtype` (the dtype y is returned in) and
    `fixed_e` (the user's e had no time axis: e is the same at every step, broadcast here).
    """

    e: Array
    i: Array
    s: Array
    lk: Array | None
    ld: Array | None
    lo: Array | None
    lp: ProductLog | None
    reset: Array | None
    m0: Array | None
    structure: str = dataclasses.field(metadata=_STATIC)
    out_dtype: Any = dataclasses.field(metadata=_STATIC)
    fixed_e: bool = dataclasses.field(default=False, metadata=_STATIC)

    @property
    def elementwise_read(self) -> bool:
        return self.s.ndim == 5

    def materialised(self) -> Problem:
        """The same problem with a product decay turned into its full log_o [b,T,h,K,D] (for the
        backends that need the K×D decay of every step as an array)."""
        if self.lp is None:
            return self
        return dataclasses.replace(self, lo=self.lp.log(), lp=None, structure=FULL)


def _as_array(x, name: str) -> Array:
    if isinstance(x, Decay | ProductDecay):
        raise TypeError(f"{name} must be an array, got a {type(x).__name__}")
    try:
        return jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}") from err


def _check_inexact(x: Array, name: str) -> None:
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        raise TypeError(f"{name} must be a floating or complex array, got dtype {x.dtype}")


def _broadcastable(x: Array, target: tuple[int, ...], name: str, dims: str) -> Array:
    """Left-pads `x` with size-1 dims to len(target) and checks it broadcasts to `target`."""
    if x.ndim > len(target):
        raise ValueError(f"{name} has rank {x.ndim}; expected at most {len(target)} ({dims})")
    x = x.reshape((1,) * (len(target) - x.ndim) + x.shape)
    for size, want in zip(x.shape, target, strict=True):
        if size not in (1, want):
            raise ValueError(f"{name} of shape {x.shape} does not broadcast to {dims}={target}")
    return x


def unbroadcast(g, shape):
    """Sums g over the axes where `shape` (same rank) has size 1: the cotangent of an input
    broadcast to g's shape (a decay shared over b, h, K or D; a fixed s)."""
    axes = tuple(a for a, (n, m) in enumerate(zip(shape, g.shape, strict=True)) if n == 1 < m)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


def is_zero_literal(x) -> bool:
    return x is None or (isinstance(x, int | float) and not isinstance(x, bool) and x == 0)


def _product(log_o: ProductDecay, shape5, cdtype, complex_inputs: bool, suffix: str):
    """Validates a ProductDecay into a ProductLog (factors in the accumulation dtype)."""
    B, T, H, K, D = shape5
    if log_o.fn not in FUNCTIONS:
        raise ValueError(f"log_o{suffix}.fn must be one of {FUNCTIONS}, got {log_o.fn!r}")
    if not isinstance(log_o.scale, int | float) or isinstance(log_o.scale, bool):
        raise TypeError(f"log_o{suffix}.scale must be a Python float, got {log_o.scale!r}")
    factors = {}
    for letter, target, dims in (
        ("k", (B, T, H, K), "[B,T,H,K]"),
        ("d", (B, T, H, D), "[B,T,H,D]"),
        ("p", shape5, "[B,T,H,K,D]"),
    ):
        part = getattr(log_o, letter)
        name = f"log_o{suffix}.{letter}"
        if part is None:
            factors[letter] = None
            continue
        x = _as_array(part, name)
        _check_dtype_of_decay(x, name, complex_inputs)
        if jnp.iscomplexobj(x) and log_o.fn != "identity":
            raise TypeError(f"{name} is complex; only fn='identity' takes complex factors")
        factors[letter] = _broadcastable(x, target, name, dims).astype(cdtype)
    if all(x is None for x in factors.values()):
        raise ValueError(f"log_o{suffix} is a ProductDecay without factors (give k, d or p)")
    return ProductLog(**factors, fn=log_o.fn, scale=float(log_o.scale))


def _decay(log_o, shape5, cdtype, complex_inputs: bool, suffix: str):
    """Reduces log_o to (structure, lk, ld, lo, lp)."""
    B, T, H, K, D = shape5
    if is_zero_literal(log_o):
        return NONE, None, None, None, None
    if isinstance(log_o, ProductDecay):
        lp = _product(log_o, shape5, cdtype, complex_inputs, suffix)
        log_shape = jax.eval_shape(lp.log).shape
        if log_shape[1] > 1 and log_shape[-2:] == (K, D):
            return PRODUCT, None, None, None, lp
        # Not a data-dependent K×D decay: as an array it is no larger than its factors.
        log_o = lp.log()
    if isinstance(log_o, Decay):
        parts = []
        for part, size, letter in ((log_o.k, K, "K"), (log_o.d, D, "D")):
            name = f"log_o{suffix}.{letter.lower()}"
            if is_zero_literal(part):
                parts.append(None)
                continue
            x = _as_array(part, name)
            _check_dtype_of_decay(x, name, complex_inputs)
            parts.append(_broadcastable(x, (B, T, H, size), name, f"[B,T,H,{letter}]"))
        lk, ld = parts
        if lk is not None and ld is not None:
            # A size-1 factor is a scalar per head: fold it into the other factor.
            if lk.shape[-1] == 1:
                lk, ld = None, ld + lk
            elif ld.shape[-1] == 1:
                lk, ld = lk + ld, None
        lo = None
    else:
        x = _as_array(log_o, f"log_o{suffix}")
        _check_dtype_of_decay(x, f"log_o{suffix}", complex_inputs)
        x = _broadcastable(x, shape5, f"log_o{suffix}", "[B,T,H,K,D]")
        lk = ld = lo = None
        if x.shape[-1] == 1:
            lk = x[..., 0]
        elif x.shape[-2] == 1:
            ld = x[..., 0, :]
        else:
            lo = x
    if lo is not None:
        return FULL, None, None, lo.astype(cdtype), None
    if lk is None and ld is None:
        return NONE, None, None, None, None
    if lk is None and ld.shape[-1] == 1:
        lk, ld = ld, None  # a size-1 D factor is a scalar decay
    if ld is None:
        structure = SCALAR if lk.shape[-1] == 1 else KWISE
    elif lk is None:
        structure = DWISE
    else:
        structure = SEPARABLE
    cast = lambda a: None if a is None else a.astype(cdtype)  # noqa: E731
    return structure, cast(lk), cast(ld), None, None


def accumulation_dtype(dtype) -> jnp.dtype:
    """float64 (complex128) for float64 (complex128) inputs, which exist only under
    `jax_enable_x64`; float32 (complex64) for every narrower dtype (bfloat16, float16, float32)."""
    dtype = jnp.dtype(dtype)
    if dtype.kind == "c":
        return jnp.dtype(jnp.complex128 if dtype.itemsize >= 16 else jnp.complex64)
    return jnp.dtype(jnp.float64 if dtype.itemsize >= 8 else jnp.float32)


def _check_dtype_of_decay(x: Array, name: str, complex_inputs: bool) -> None:
    _check_inexact(x, name)
    if jnp.iscomplexobj(x) and not complex_inputs:
        raise TypeError(f"{name} is complex ({x.dtype}) but e, i, s are real; pass complex e, i, s")


def problem(e, i, log_o, s, initial_state=None, segment_ids=None, *, suffix: str = "") -> Problem:
    """Validates user inputs (names in errors carry `suffix`, e.g. '_t') and builds a Problem."""
    e = _as_array(e, f"e{suffix}")
    i = _as_array(i, f"i{suffix}")
    s = _as_array(s, f"s{suffix}")
    for x, name in ((e, "e"), (i, "i"), (s, "s")):
        _check_inexact(x, name + suffix)
    if not (e.dtype == i.dtype == s.dtype):
        raise TypeError(
            f"e{suffix}, i{suffix} and s{suffix} must share one dtype; "
            f"got e={e.dtype}, i={i.dtype}, s={s.dtype}"
        )
    if e.ndim != 4:
        raise ValueError(f"e{suffix} must be [B,T,H,K] (rank 4), got shape {e.shape}")
    if i.ndim != 4:
        raise ValueError(f"i{suffix} must be [B,T,H,D] (rank 4), got shape {i.shape}")
    B, T, H, D = i.shape
    K = e.shape[-1]
    if any(n not in (1, want) for n, want in zip(e.shape[:3], (B, T, H), strict=True)):
        raise ValueError(
            f"e{suffix} shape {e.shape} does not match i{suffix} {i.shape} in [B,T,H] (e may be "
            "shared over B, T or H by size-1 dims)"
        )
    fixed_e = e.shape[1] == 1 and T > 1
    e = jnp.broadcast_to(e, (B, T, H, K))
    if T == 0:
        raise ValueError("the time axis T must be non-empty")
    complex_inputs = jnp.iscomplexobj(e)
    cdtype = accumulation_dtype(e.dtype)

    if s.ndim == 4:
        if s.shape != (B, T, H, K):
            raise ValueError(
                f"s{suffix} (vector read) must be [B,T,H,K]={(B, T, H, K)}, got {s.shape}"
            )
    elif s.ndim == 5:
        _broadcastable(s, (B, T, H, K, D), f"s{suffix}", "[B,T,H,K,D]")
    else:
        raise ValueError(
            f"s{suffix} must be [B,T,H,K] (vector read) or rank 5 broadcastable to "
            f"[B,T,H,K,D] (elementwise read), got shape {s.shape}"
        )

    structure, lk, ld, lo, lp = _decay(log_o, (B, T, H, K, D), cdtype, complex_inputs, suffix)

    m0 = None
    if initial_state is not None:
        m0 = _as_array(initial_state, "initial_state")
        _check_inexact(m0, "initial_state")
        if jnp.iscomplexobj(m0) and not complex_inputs:
            raise TypeError("initial_state is complex but e, i, s are real")
        if m0.shape != (B, H, K, D):
            raise ValueError(f"initial_state must be [B,H,K,D]={(B, H, K, D)}, got {m0.shape}")
        m0 = m0.astype(cdtype)

    return Problem(
        e=e.astype(cdtype),
        i=i.astype(cdtype),
        s=s.astype(cdtype),
        lk=lk,
        ld=ld,
        lo=lo,
        lp=lp,
        reset=segment_resets(segment_ids, B, T),
        m0=m0,
        structure=structure,
        out_dtype=jnp.dtype(i.dtype),
        fixed_e=fixed_e,
    )


def varying_axes(x) -> frozenset:
    """The mesh axes `x` varies over inside `jax.shard_map` (empty outside it)."""
    manual = getattr(jax.typeof(x), "manual_axis_type", None)
    return frozenset(getattr(manual, "varying", ()))


def vary_like(x, *refs):
    """`x` typed as varying over every mesh axis any of `refs` varies over.

    Inside `jax.shard_map` a value built from constants (a zero memory, an output buffer, a
    gradient accumulator) or passed replicated is invariant, while the values a scan computes
    from sharded inputs vary; a scan carry must have one type throughout. Outside shard_map (or
    where nothing varies) this returns `x` unchanged.
    """
    axes = frozenset().union(*(varying_axes(r) for r in refs if r is not None))
    missing = tuple(sorted(axes - varying_axes(x)))
    return jax.lax.pcast(x, missing, to="varying") if missing else x


def segment_resets(segment_ids, B: int, T: int) -> Array | None:
    """The memory restarts of packed sequences: where a segment id changes.

    Args:
      segment_ids: [B, T] integers (or bools), or None.
      B, T: the batch and time sizes the ids must have.

    Returns:
      [B, T] bool, True at t where ``segment_ids[:, t] != segment_ids[:, t-1]`` (never at t=0);
      None when segment_ids is None (no restart).

    Raises:
      TypeError if the ids are not integers; ValueError if they are not [B, T].
    """
    if segment_ids is None:
        return None
    ids = _as_array(segment_ids, "segment_ids")
    if not (jnp.issubdtype(ids.dtype, jnp.integer) or ids.dtype == np.bool_):
        raise TypeError(f"segment_ids must be an integer array, got dtype {ids.dtype}")
    if ids.shape != (B, T):
        raise ValueError(f"segment_ids must be [B,T]={(B, T)}, got shape {ids.shape}")
    changed = ids[:, 1:] != ids[:, :-1]
    return jnp.concatenate([jnp.zeros((B, 1), bool), changed], axis=1)

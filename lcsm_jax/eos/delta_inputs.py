"""Validation of the delta-rule scan's inputs into one canonical `DeltaProblem`.

Layouts are fla's: q, k [B, T, H, K], v [B, T, H, V], beta [B, T, H], log gates [B, T, H] (one
scalar α per head and step, Gated DeltaNet) or [B, T, H, K] (one α per key, Kimi Delta Attention),
states [B, H, K, V]. Everything is computed in float32, or in float64 when an input is float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class DeltaProblem(NamedTuple):
    """The validated inputs, cast to the compute dtype. g is [B, T, H, R] with R in {1, K}
    (zeros without a gate); starts [B, T] marks segment starts (True at t = 0); seg [B, T] is the
    segment index of each token (0..N-1 with per-segment states, else 0); h0 is [B, H, K, V]
    (the state before the first segment) or [N, H, K, V] per segment (B = 1); out_dtype is v's."""

    q: jax.Array
    k: jax.Array
    v: jax.Array
    beta: jax.Array
    g: jax.Array
    starts: jax.Array
    seg: jax.Array
    h0: jax.Array | None
    per_segment: bool
    num_segments: int
    out_dtype: jnp.dtype


def _dtype(*xs):
    return jnp.float64 if any(jnp.asarray(x).dtype == jnp.float64 for x in xs) else jnp.float32


def _check(name, x, shape, layout):
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(f"delta_scan: {name} must be {layout} {tuple(shape)}, got {jnp.shape(x)}")
    if jnp.iscomplexobj(x):
        raise TypeError(f"delta_scan: {name} must be real, got {jnp.asarray(x).dtype}")


def delta_problem(
    q, k, v, beta, log_alpha, initial_state, segment_ids, segment_initial_states, num_segments
) -> DeltaProblem:
    q = jnp.asarray(q)
    if q.ndim != 4:
        raise ValueError(f"delta_scan: q must be [B,T,H,K], got shape {q.shape}")
    B, T, H, K = q.shape
    if T < 1:
        raise ValueError("delta_scan: the sequence must have T >= 1 tokens")
    v = jnp.asarray(v)
    _check("k", k, q.shape, "[B,T,H,K] like q")
    if v.ndim != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(
            f"delta_scan: v must be [B,T,H,V] with q's B,T,H {(B, T, H)}, got {v.shape}"
        )
    _check("v", v, v.shape, "[B,T,H,V]")
    _check("beta", beta, (B, T, H), "[B,T,H]")
    V = v.shape[-1]
    dt = _dtype(q, k, v, beta, *(x for x in (log_alpha, initial_state) if x is not None))
    if log_alpha is None:
        g = jnp.zeros((B, T, H, 1), dt)
    else:
        log_alpha = jnp.asarray(log_alpha)
        if log_alpha.shape == (B, T, H):
            g = log_alpha[..., None]
        elif log_alpha.shape == (B, T, H, K):
            g = log_alpha
        else:
            raise ValueError(
                f"delta_scan: the log gate must be [B,T,H] {(B, T, H)} (scalar) or [B,T,H,K] "
                f"{(B, T, H, K)} (per key), got {log_alpha.shape}"
            )
        _check("log gate", g, g.shape, "")
    if segment_ids is None:
        ids = jnp.zeros((B, T), jnp.int32)
    else:
        ids = jnp.asarray(segment_ids)
        _check("segment_ids", ids, (B, T), "[B,T]")
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"delta_scan: segment_ids must be integers, got {ids.dtype}")
    starts = jnp.concatenate([jnp.ones((B, 1), bool), ids[:, 1:] != ids[:, :-1]], axis=1)
    per_segment = segment_initial_states is not None or num_segments is not None
    h0, N = None, None
    if per_segment:
        if B != 1 or segment_ids is None:
            raise ValueError(
                "delta_scan: per-segment states need B = 1 and segment_ids holding each token's "
                "sequence index 0..N-1 (as from cu_seqlens)"
            )
        if initial_state is not None:
            raise ValueError("delta_scan: pass initial_state or segment_initial_states, not both")
        if segment_initial_states is not None:
            N = jnp.shape(segment_initial_states)[0]
            _check("segment_initial_states", segment_initial_states, (N, H, K, V), "[N,H,K,V]")
            h0 = jnp.asarray(segment_initial_states, dt)
        if num_segments is None:
            num_segments = N
        seg = ids.astype(jnp.int32)
    else:
        seg = jnp.zeros((B, T), jnp.int32)
        if initial_state is not None:
            _check("initial_state", initial_state, (B, H, K, V), "[B,H,K,V]")
            h0 = jnp.asarray(initial_state, dt)
    return DeltaProblem(
        q=q.astype(dt),
        k=jnp.asarray(k, dt),
        v=v.astype(dt),
        beta=jnp.asarray(beta, dt),
        g=g.astype(dt),
        starts=starts,
        seg=seg,
        h0=h0,
        per_segment=per_segment,
        num_segments=int(num_segments or 1),
        out_dtype=v.dtype,
    )


def ends(starts_BxT):
    """[B, T] bool: True at the last token of each segment."""
    return jnp.concatenate([starts_BxT[:, 1:], jnp.ones_like(starts_BxT[:, :1])], axis=1)

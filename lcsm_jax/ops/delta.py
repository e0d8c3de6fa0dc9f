"""The delta-rule family in flash-linear-attention's conventions: `delta_rule` (DeltaNet),
`gated_delta_rule` (Gated DeltaNet) and `kda` (Kimi Delta Attention), over `eos.delta_scan`.

q, k [B, T, H, K], v [B, T, H, V], beta [B, T, H], log gates g [B, T, H] (gated) or
[B, T, H, K] (kda), states [B, H, K, V]; with cu_seqlens (B = 1) initial and final states are per
sequence, [N, H, K, V]. ``S_t = (I - β_t k_t k_tᵀ) Diag(exp g_t) S_{t-1} + β_t k_t v_tᵀ``,
``o_t = scale · S_tᵀ q_t``; scale None is K**-0.5. ``use_qk_l2norm_in_kernel`` L2-normalises q and k
over K first (fla's option; eps 1e-6 as fla's l2norm).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.eos import delta_api
from lcsm_jax.ops import _packing

L2_EPS = 1e-6


def l2_normalize(x, eps: float = L2_EPS):
    """x / sqrt(Σ x² + eps) over the last axis, in float32 (fla's ``l2norm``)."""
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.sum(x32 * x32, axis=-1, keepdims=True) + eps)).astype(x.dtype)


def _run(name, q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens,
         use_qk_l2norm_in_kernel, segment_ids, backend, chunk_size):  # fmt: skip
    q, k, v = (jnp.asarray(x) for x in (q, k, v))
    if q.ndim != 4:
        raise ValueError(f"{name}: q must be [B,T,H,K], got shape {q.shape}")
    if use_qk_l2norm_in_kernel:
        q, k = l2_normalize(q), l2_normalize(k)
    K = q.shape[-1]
    qs = q * jnp.asarray(K**-0.5 if scale is None else scale, q.dtype)
    kwargs = dict(backend=backend, chunk_size=chunk_size)
    if cu_seqlens is None:
        o, S = delta_api.delta_scan(
            qs, k, v, beta, g, initial_state=initial_state, segment_ids=segment_ids, **kwargs
        )
        return o, (S if output_final_state else None)
    if segment_ids is not None:
        raise ValueError(f"{name}: pass cu_seqlens or segment_ids, not both")
    if q.shape[0] != 1:
        raise ValueError(
            f"{name}: with cu_seqlens the batch must be 1 (packed), got B={q.shape[0]}"
        )
    ids = _packing.segment_ids_from_cu_seqlens(cu_seqlens, q.shape[1])
    N = jnp.asarray(cu_seqlens).shape[0] - 1
    if initial_state is not None and jnp.shape(initial_state)[0] != N:
        raise ValueError(
            f"{name}: initial_state must be [N,H,K,V] (one per sequence, N={N}), got "
            f"{jnp.shape(initial_state)}"
        )
    o, _, finals = delta_api.delta_scan(
        qs, k, v, beta, g, segment_ids=ids, segment_initial_states=initial_state,
        num_segments=N, return_segment_states=True, **kwargs,
    )  # fmt: skip
    return o, (finals if output_final_state else None)


def delta_rule(q, k, v, beta, scale=None, initial_state=None, output_final_state=False,
               cu_seqlens=None, use_qk_l2norm_in_kernel=False, *, segment_ids=None,
               backend="auto", chunk_size=None):  # fmt: skip
    """DeltaNet (Yang et al., arXiv 2406.06484), as fla's ``chunk_delta_rule``: α = 1."""
    return _run("delta_rule", q, k, v, None, beta, scale, initial_state, output_final_state,
                cu_seqlens, use_qk_l2norm_in_kernel, segment_ids, backend, chunk_size)  # fmt: skip


def gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                     cu_seqlens=None, use_qk_l2norm_in_kernel=False, *, segment_ids=None,
                     backend="auto", chunk_size=None):  # fmt: skip
    """Gated DeltaNet (Yang et al., arXiv 2412.06464), as fla's ``chunk_gated_delta_rule``:
    g [B, T, H] is the log of the scalar gate α_t per head."""
    g = jnp.asarray(g)
    if g.ndim != 3:
        raise ValueError(f"gated_delta_rule: g must be [B,T,H] (one gate per head), got {g.shape}")
    return _run("gated_delta_rule", q, k, v, g, beta, scale, initial_state, output_final_state,
                cu_seqlens, use_qk_l2norm_in_kernel, segment_ids, backend, chunk_size)  # fmt: skip


def kda(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
        cu_seqlens=None, use_qk_l2norm_in_kernel=False, *, segment_ids=None, backend="auto",
        chunk_size=None):  # fmt: skip
    """Kimi Delta Attention (arXiv 2510.26692), as fla's ``chunk_kda``: g [B, T, H, K] is the
    log of a per-key gate, applied before the delta update."""
    g = jnp.asarray(g)
    if g.ndim != 4:
        raise ValueError(f"kda: g must be [B,T,H,K] (one gate per key), got {g.shape}")
    return _run("kda", q, k, v, g, beta, scale, initial_state, output_final_state,
                cu_seqlens, use_qk_l2norm_in_kernel, segment_ids, backend, chunk_size)  # fmt: skip

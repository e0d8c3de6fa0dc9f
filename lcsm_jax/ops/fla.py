"""Linear attention and gated linear RNN ops in flash-linear-attention's conventions.

Layouts are fla's (``head_first=False``): q, k [B, T, H, K], v [B, T, H, V], states [B, H, K, V],
log-space gates. Each op is one `eos_scan` with (EOS stages, SPEC §1)

    e = k (expand),  i = v (input),  log o = g (oscillation),  s = scale · q (shrink)

so ``S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ`` and ``o_t = scale · S_tᵀ q_t``. Every op also takes
`backend` / `chunk_size` (passed to `eos_scan`) and `segment_ids` ([B, T] ints, the memory restarts
where the id changes; an lcsm_jax extension beside fla's `cu_seqlens`, for B > 1). With
`cu_seqlens` (B = 1, N packed sequences) the initial and final states are per sequence,
[N, H, K, V].
"""

from __future__ import annotations

import jax.numpy as jnp

from lcsm_jax.eos import api
from lcsm_jax.ops import _packing
from lcsm_jax.ops._checks import check_rank, check_shape


def _qkv(name, q, k, v):
    q, k, v = (jnp.asarray(x) for x in (q, k, v))
    for arg, x in (("q", q), ("k", k), ("v", v)):
        check_rank(name, arg, x, 4, "[B,T,H,K]" if arg != "v" else "[B,T,H,V]")
    check_shape(name, "k", k, q.shape, "q")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"{name}: v {v.shape} must share [B,T,H] with q {q.shape}")
    return q, k, v


def _scale(scale, K):
    return K**-0.5 if scale is None else scale


def _scan(
    name,
    q,
    k,
    v,
    g_BxTxHxK,
    scale,
    initial_state,
    output_final_state,
    cu_seqlens,
    segment_ids,
    backend,
    chunk_size,
):
    """The shared body: g None (no decay) or broadcastable to [B, T, H, K] (log space)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    qs = q * jnp.asarray(_scale(scale, K), q.dtype)
    log_o = 0 if g_BxTxHxK is None else g_BxTxHxK[..., None]
    if cu_seqlens is None:
        if initial_state is not None:
            check_shape(name, "initial_state", initial_state, (B, H, K, V))
        o, ht = api.eos_scan(
            k,
            v,
            log_o,
            qs,
            initial_state=initial_state,
            segment_ids=segment_ids,
            backend=backend,
            chunk_size=chunk_size,
        )
        return o, (ht if output_final_state else None)
    if segment_ids is not None:
        raise ValueError(f"{name}: pass cu_seqlens or segment_ids, not both")
    if B != 1:
        raise ValueError(f"{name}: with cu_seqlens the batch must be 1 (packed), got B={B}")
    N = jnp.asarray(cu_seqlens).shape[0] - 1
    ids = _packing.segment_ids_from_cu_seqlens(cu_seqlens, T)
    if initial_state is not None:
        check_shape(
            name, "initial_state", initial_state, (N, H, K, V), "[N,H,K,V] (one per sequence)"
        )
    o, _ = api.eos_scan(k, v, log_o, qs, segment_ids=ids, backend=backend, chunk_size=chunk_size)
    g = jnp.zeros((T, H, K), jnp.float32)
    if g_BxTxHxK is not None:
        g = jnp.broadcast_to(jnp.asarray(g_BxTxHxK, jnp.float32), (1, T, H, K))[0]
    h0 = None if initial_state is None else jnp.asarray(initial_state, jnp.float32)
    if h0 is not None:
        o = _packing.add_initial_states(o[0], qs[0], g, h0, ids[0])[None]
    ht = _packing.final_states(k[0], v[0], g, h0, ids[0], N) if output_final_state else None
    return o, ht


def gla(
    q,
    k,
    v,
    g,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    *,
    segment_ids=None,
    backend="auto",
    chunk_size=None,
):
    """Gated linear attention (Yang et al., arXiv 2312.06635), as fla's ``chunk_gla``.

    g [B, T, H, K] is the log forget gate (``<= 0``): ``S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ``,
    ``o_t = scale · S_tᵀ q_t``; scale None is K**-0.5. Returns ``(o [B,T,H,V] in v's dtype,
    final state [B,H,K,V] float32 or None unless output_final_state)``.
    """
    q, k, v = _qkv("gla", q, k, v)
    check_shape("gla", "g", g, q.shape, "q")
    return _scan(
        "gla", q, k, v, jnp.asarray(g), scale, initial_state, output_final_state,
        cu_seqlens, segment_ids, backend, chunk_size,
    )  # fmt: skip


def simple_gla(
    q,
    k,
    v,
    g,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    *,
    segment_ids=None,
    backend="auto",
    chunk_size=None,
):
    """GLA with one scalar log gate per head and step, g [B, T, H] (fla's ``chunk_simple_gla``,
    the Mamba-2 / Lightning-Attention-2 decay); otherwise as `gla`."""
    q, k, v = _qkv("simple_gla", q, k, v)
    check_shape("simple_gla", "g", g, q.shape[:3], "[B,T,H]")
    return _scan(
        "simple_gla", q, k, v, jnp.asarray(g)[..., None], scale, initial_state,
        output_final_state, cu_seqlens, segment_ids, backend, chunk_size,
    )  # fmt: skip


def retention_decays(num_heads: int):
    """RetNet's fixed log decay per head, log(1 - 2^(-5-h)) for h = 0..H-1 (arXiv 2307.08621)."""
    return jnp.log1p(-jnp.exp2(-5.0 - jnp.arange(num_heads, dtype=jnp.float32)))


def retention(
    q,
    k,
    v,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    *,
    segment_ids=None,
    backend="auto",
    chunk_size=None,
):
    """Multi-scale retention (Sun et al., arXiv 2307.08621), as fla's ``chunk_retention``: the
    decay of head h is the fixed 1 - 2^(-5-h); otherwise as `gla`."""
    q, k, v = _qkv("retention", q, k, v)
    g = retention_decays(q.shape[2])[None, None, :, None]
    return _scan(
        "retention", q, k, v, g, scale, initial_state, output_final_state,
        cu_seqlens, segment_ids, backend, chunk_size,
    )  # fmt: skip


def linear_attn(
    q,
    k,
    v,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    normalize=False,
    *,
    segment_ids=None,
    backend="auto",
    chunk_size=None,
):
    """Linear attention without decay (Katharopoulos et al., arXiv 2006.16236), as fla's
    ``chunk_linear_attn``: ``o_t = scale · q_tᵀ Σ_{i<=t} k_i v_iᵀ``. Feature maps are the
    caller's (apply them to q and k first). `normalize` divides by ``scale · q_t · Σ_{i<=t} k_i``
    (+1e-10, as fla; the sum restarts with each packed sequence and ignores initial_state)."""
    q, k, v = _qkv("linear_attn", q, k, v)
    o, ht = _scan(
        "linear_attn", q, k, v, None, scale, initial_state, output_final_state,
        cu_seqlens, segment_ids, backend, chunk_size,
    )  # fmt: skip
    if normalize:
        ids = segment_ids
        if cu_seqlens is not None:
            ids = _packing.segment_ids_from_cu_seqlens(cu_seqlens, q.shape[1])
        ids = jnp.zeros(q.shape[:2], jnp.int32) if ids is None else jnp.asarray(ids)
        k_sum = _packing.segmented_cumsum(k.astype(jnp.float32), _packing.starts(ids))
        qs = q.astype(jnp.float32) * _scale(scale, q.shape[-1])
        z = jnp.sum(qs * k_sum, axis=-1, keepdims=True)
        o = (o.astype(jnp.float32) / (z + 1e-10)).astype(o.dtype)
    return o, ht


def rwkv6(
    r,
    k,
    v,
    w,
    u,
    scale=None,
    initial_state=None,
    output_final_state=False,
    cu_seqlens=None,
    *,
    segment_ids=None,
    backend="auto",
    chunk_size=None,
):
    """RWKV-6's WKV (Peng et al., arXiv 2404.05892), as fla's ``chunk_rwkv6`` / naive recurrence.

    r, k, w [B, T, H, K] (w the log decay, ``<= 0``), v [B, T, H, V], u [H, K] the bonus:
    ``o_t = scale · Σ_k r_t[k] (S_{t-1}[k] + u[k] k_t[k] v_t)``,
    ``S_t = diag(exp w_t) S_{t-1} + k_t v_tᵀ``.

    The output reads the state before step t's decay and update. The EOS scan runs on the inputs
    shifted by one step, ``S'_t = diag(exp w_{t-1}) S'_{t-1} + k_{t-1} v_{t-1}ᵀ`` (nothing shifted
    across a sequence start), so that ``S'_t = S_{t-1}`` exactly; the final state is one more
    step, and the bonus ``scale · (r_t · (u ⊙ k_t)) v_t`` is added outside the scan.
    """
    r, k, v = _qkv("rwkv6", r, k, v)
    check_shape("rwkv6", "w", w, r.shape, "r")
    u, w = jnp.asarray(u), jnp.asarray(w)
    check_shape("rwkv6", "u", u, r.shape[2:], "[H,K]")
    ids = segment_ids
    if cu_seqlens is not None:
        ids = _packing.segment_ids_from_cu_seqlens(cu_seqlens, r.shape[1])
    starts = None if ids is None else _packing.starts(jnp.asarray(ids))[..., None, None]

    def shift(x):
        x = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
        return x if starts is None else jnp.where(starts, jnp.zeros_like(x), x)

    o, S = _scan(
        "rwkv6", r, shift(k), shift(v), shift(w), scale, initial_state, cu_seqlens is None,
        cu_seqlens, segment_ids, backend, chunk_size,
    )  # fmt: skip
    ht = None
    if output_final_state and cu_seqlens is None:
        last = (k[:, -1, :, :, None] * v[:, -1, :, None, :]).astype(jnp.float32)
        ht = jnp.exp(w[:, -1].astype(jnp.float32))[..., None] * S + last
    elif output_final_state:
        N = jnp.asarray(cu_seqlens).shape[0] - 1
        h0 = None if initial_state is None else jnp.asarray(initial_state, jnp.float32)
        w32 = w[0].astype(jnp.float32)
        ht = _packing.final_states(k[0], v[0], w32, h0, ids[0], N)
    s = _scale(scale, r.shape[-1])
    bonus_BxTxH = jnp.einsum(
        "bthk,hk,bthk->bth", r.astype(jnp.float32), u.astype(jnp.float32), k.astype(jnp.float32)
    )
    o = o.astype(jnp.float32) + s * bonus_BxTxH[..., None] * v.astype(jnp.float32)
    return o.astype(v.dtype), ht


def hgrn(x, g, initial_state=None, output_final_state=False, *, segment_ids=None, backend="auto"):
    """HGRN's recurrence (Qin et al., arXiv 2311.04823), as fla's naive ``hgrn``: x, g [B, T, D],
    ``h_t = exp(g_t) ⊙ h_{t-1} + x_t``, ``o_t = h_t``; state [B, D] float32.

    In EOS terms one head with K = 1: e = 1, i = x, a D-wise decay, s = 1.
    """
    x, g = jnp.asarray(x), jnp.asarray(g)
    check_rank("hgrn", "x", x, 3, "[B,T,D]")
    check_shape("hgrn", "g", g, x.shape, "x")
    B, T, D = x.shape
    h0 = None
    if initial_state is not None:
        check_shape("hgrn", "initial_state", initial_state, (B, D))
        h0 = jnp.asarray(initial_state)[:, None, None, :]
    ones = jnp.ones((B, T, 1, 1), x.dtype)
    o, ht = api.eos_scan(
        ones,
        x[:, :, None],
        g[:, :, None, None, :],
        ones,
        initial_state=h0,
        segment_ids=segment_ids,
        backend=backend,
    )
    return o[:, :, 0], (ht[:, 0, 0] if output_final_state else None)

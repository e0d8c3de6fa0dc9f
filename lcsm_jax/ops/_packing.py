"""Packed sequences for the fla-style ops: `cu_seqlens` offsets, segmented cumulative sums, and the
per-sequence initial and final states that one `eos_scan` over the packed row cannot return.

With cu_seqlens (B = 1, N sequences) fla takes one initial state per sequence and returns one final
state per sequence. The scan itself runs with segment resets (each sequence from a zero memory);
linearity then adds what each initial state contributes. For a K-wise decay (every fla op here)
the memory of sequence n at step t is

    S_t = S⁰_t + diag(exp G_t) h0_n,   G_t = Σ_{τ in n, τ <= t} g_τ

and its final memory is Σ_{t in n} diag(exp R_t) k_t v_tᵀ + diag(exp G_end) h0_n with
R_t = Σ_{τ in n, τ > t} g_τ. Both sums are segmented scans, so nothing is a difference of two long
cumulative sums (which would lose the float32 precision of a strong decay).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def segment_ids_from_cu_seqlens(cu_seqlens, T: int):
    """[1, T] int32 sequence index of each token of the packed row."""
    cu = jnp.asarray(cu_seqlens)
    if cu.ndim != 1 or cu.shape[0] < 2:
        raise ValueError(f"cu_seqlens must be [N+1] offsets with N >= 1, got shape {cu.shape}")
    if not jnp.issubdtype(cu.dtype, jnp.integer):
        raise TypeError(f"cu_seqlens must be integer offsets, got {cu.dtype}")
    if not isinstance(cu, jax.core.Tracer):
        offsets = [int(c) for c in cu]
        if (
            offsets[0] != 0
            or offsets[-1] != T
            or any(b < a for a, b in zip(offsets, offsets[1:], strict=False))
        ):
            raise ValueError(f"cu_seqlens must rise from 0 to T={T}, got {offsets}")
    ids = jnp.searchsorted(cu[1:-1], jnp.arange(T), side="right")
    return ids.astype(jnp.int32)[None]


def starts(segment_ids_BxT):
    """[B, T] bool: True where a sequence begins (t = 0 or the id changes)."""
    first = jnp.ones_like(segment_ids_BxT[:, :1], bool)
    return jnp.concatenate([first, segment_ids_BxT[:, 1:] != segment_ids_BxT[:, :-1]], axis=1)


def _segment_add(a, b):
    (sum_a, start_a), (sum_b, start_b) = a, b
    return jnp.where(start_b, sum_b, sum_a + sum_b), start_a | start_b


def segmented_cumsum(x_BxTx, starts_BxT):
    """Inclusive cumulative sum along axis 1 that restarts wherever `starts_BxT` is True."""
    flags = starts_BxT.reshape(starts_BxT.shape + (1,) * (x_BxTx.ndim - 2))
    flags = jnp.broadcast_to(flags, x_BxTx.shape)
    out, _ = jax.lax.associative_scan(_segment_add, (x_BxTx, flags), axis=1)
    return out


def segmented_suffix_sum(x_BxTx, segment_ids_BxT):
    """Σ_{τ > t, same sequence} x_τ along axis 1 (exclusive), without subtraction."""
    ends = jnp.concatenate(
        [
            segment_ids_BxT[:, 1:] != segment_ids_BxT[:, :-1],
            jnp.ones_like(segment_ids_BxT[:, :1], bool),
        ],
        axis=1,
    )
    inclusive = jnp.flip(segmented_cumsum(jnp.flip(x_BxTx, 1), jnp.flip(ends, 1)), 1)
    nxt = jnp.concatenate([inclusive[:, 1:], jnp.zeros_like(inclusive[:, :1])], axis=1)
    same = jnp.concatenate([~ends[:, :-1], jnp.zeros_like(ends[:, :1])], axis=1)
    same = same.reshape(same.shape + (1,) * (x_BxTx.ndim - 2))
    return jnp.where(same, nxt, 0)


def add_initial_states(o_TxHxV, qs_TxHxK, g_TxHxK, h0_NxHxKxV, ids_T):
    """The output each sequence's initial state adds: Σ_k qs_t[k] exp(G_t[k]) h0_n(t)[k, :].

    qs is the scaled query (the read); g the log decay (zeros without decay). The [N, T, H, V]
    intermediate is the price of a dynamic packing; N is the number of sequences.
    """
    G = segmented_cumsum(g_TxHxK[None], starts(ids_T[None]))[0]
    read_TxHxK = qs_TxHxK.astype(jnp.float32) * jnp.exp(G)
    N = h0_NxHxKxV.shape[0]
    per_seq_NxTxHxV = jnp.einsum("thk,nhkv->nthv", read_TxHxK, h0_NxHxKxV)
    mine_NxT = ids_T[None] == jnp.arange(N)[:, None]
    extra = jnp.sum(jnp.where(mine_NxT[..., None, None], per_seq_NxTxHxV, 0), axis=0)
    return (o_TxHxV.astype(jnp.float32) + extra).astype(o_TxHxV.dtype)


def final_states(k_TxHxK, v_TxHxV, g_TxHxK, h0_NxHxKxV, ids_T, N: int):
    """[N, H, K, V] float32 final memory of each packed sequence (h0 None: zero initial states)."""
    R = segmented_suffix_sum(g_TxHxK[None], ids_T[None])[0]
    mine_NxT = ids_T[None] == jnp.arange(N)[:, None]
    weighted_TxHxK = k_TxHxK.astype(jnp.float32) * jnp.exp(R)
    ht = jnp.einsum(
        "nthk,thv->nhkv",
        jnp.where(mine_NxT[..., None, None], weighted_TxHxK[None], 0),
        v_TxHxV.astype(jnp.float32),
    )
    if h0_NxHxKxV is not None:
        total_NxHxK = jnp.einsum("nt,thk->nhk", mine_NxT.astype(jnp.float32), g_TxHxK)
        ht = ht + jnp.exp(total_NxHxK)[..., None] * h0_NxHxKxV
    return ht

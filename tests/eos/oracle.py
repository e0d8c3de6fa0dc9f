"""Float64 NumPy oracle for the EOS recurrence (SPEC §1), independent of JAX.

    m_t = exp(log_o_t) ⊙ m_{t-1} + e_t i_tᵀ        y_t[c] = Σ_r s_t[r, c] m_t[r, c]

per batch and head, with m_{-1} = initial_state (or 0) and m_{t-1} replaced by 0 wherever the
segment id changes from t-1 to t. A vector read s_t [K] is the elementwise read with s broadcast
over D. The oracle takes the log-oscillation dense (anything broadcastable to [B,T,H,K,D]);
`separable` builds that from a (k, d) pair.
"""

from __future__ import annotations

import numpy as np


def _dtype(*xs):
    return np.complex128 if any(np.iscomplexobj(x) for x in xs if x is not None) else np.float64


def separable(k, d, shape_BxTxHxKxD):
    """Dense log o[r, c] = k[r] + d[c]; k broadcasts to [B,T,H,K], d to [B,T,H,D] (None: 0)."""
    B, T, H, K, D = shape_BxTxHxKxD
    out = np.zeros(shape_BxTxHxKxD, _dtype(k, d))
    if k is not None:
        out = out + np.broadcast_to(np.asarray(k, out.dtype), (B, T, H, K))[..., None]
    if d is not None:
        out = out + np.broadcast_to(np.asarray(d, out.dtype), (B, T, H, D))[..., None, :]
    return out


def product_argument(k, d, p):
    """z[b,t,h,r,c] = k[b,t,h,r] d[b,t,h,c] p[h,r,c] in float64 (a ProductDecay's argument)."""
    k, d, p = (np.asarray(x, np.float64) for x in (k, d, p))
    return k[..., :, None] * d[..., None, :] * p


def log_sigmoid(z):
    return -np.logaddexp(0.0, -np.asarray(z, np.float64))


def resets(segment_ids, B, T):
    """[B,T] bool: True where the segment id changes from t-1 to t (never at t=0)."""
    if segment_ids is None:
        return np.zeros((B, T), bool)
    ids = np.asarray(segment_ids)
    out = np.zeros((B, T), bool)
    out[:, 1:] = ids[:, 1:] != ids[:, :-1]
    return out


def _dense(e, i, log_o, s):
    dt = _dtype(e, i, log_o, s)
    e = np.asarray(e).astype(dt)
    i = np.asarray(i).astype(dt)
    B, T, H, K = e.shape
    D = i.shape[-1]
    shape = (B, T, H, K, D)
    lo = np.zeros(shape, dt) if log_o is None else np.asarray(log_o).astype(dt)
    o = np.broadcast_to(np.exp(lo), shape)
    s = np.asarray(s).astype(dt)
    s = s[..., None] if s.ndim == 4 else s
    return e, i, o, np.broadcast_to(s, shape), shape


def eos(e, i, log_o, s, initial_state=None, segment_ids=None, *, return_states=False):
    """Returns (y [B,T,H,D], final m [B,H,K,D]) in float64/complex128 (and all m_t if asked)."""
    e, i, o, s, (B, T, H, K, D) = _dense(e, i, log_o, s)
    reset = resets(segment_ids, B, T)
    m = np.zeros((B, H, K, D), e.dtype)
    if initial_state is not None:
        m = m + np.asarray(initial_state).astype(e.dtype)
    y = np.zeros((B, T, H, D), e.dtype)
    states = np.zeros((B, T, H, K, D), e.dtype)
    for t in range(T):
        keep = ~reset[:, t]
        m = np.where(keep[:, None, None, None], o[:, t] * m, 0) + (
            e[:, t, :, :, None] * i[:, t, :, None, :]
        )
        states[:, t] = m
        y[:, t] = np.sum(s[:, t] * m, axis=-2)
    if return_states:
        return y, m, states
    return y, m


def eos_vjp(e, i, log_o, s, initial_state, segment_ids, dy, dm_final):
    """SPEC §1 backward for real inputs, all gradients dense over [B,T,H,K,D] where broadcast.

    Returns a dict with de [B,T,H,K], di [B,T,H,D], dlog_o [B,T,H,K,D], ds (s's rank: [B,T,H,K]
    for a vector read, [B,T,H,K,D] for an elementwise one) and dm0 [B,H,K,D].
    """
    vector_read = np.ndim(s) == 4
    _, m_last, states = eos(e, i, log_o, s, initial_state, segment_ids, return_states=True)
    e, i, o, s, (B, T, H, K, D) = _dense(e, i, log_o, s)
    reset = resets(segment_ids, B, T)
    m0 = np.zeros((B, H, K, D)) if initial_state is None else np.asarray(initial_state, float)
    dy = np.asarray(dy, float)
    de, di = np.zeros((B, T, H, K)), np.zeros((B, T, H, D))
    do, ds = np.zeros((B, T, H, K, D)), np.zeros((B, T, H, K, D))
    dm = np.asarray(dm_final, float).copy()
    for t in reversed(range(T)):
        dm = dm + s[:, t] * dy[:, t, :, None, :]
        ds[:, t] = states[:, t] * dy[:, t, :, None, :]
        m_prev = states[:, t - 1] if t > 0 else m0
        # A reset makes the effective oscillation 0: nothing flows into m_{t-1} through o_t.
        keep = (~reset[:, t])[:, None, None, None]
        do[:, t] = np.where(keep, dm * m_prev, 0)
        de[:, t] = np.sum(dm * i[:, t, :, None, :], axis=-1)
        di[:, t] = np.sum(dm * e[:, t, :, :, None], axis=-2)
        dm = np.where(keep, o[:, t] * dm, 0)
    return {
        "de": de,
        "di": di,
        "dlog_o": do * o,
        "ds": ds.sum(-1) if vector_read else ds,
        "dm0": dm,
    }


def unbroadcast(grad, shape):
    """Sums a gradient taken over a broadcast shape back to `shape` (right-aligned)."""
    grad = np.asarray(grad)
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead)))
    axes = tuple(a for a, n in enumerate(shape) if n == 1 and grad.shape[a] != 1)
    return grad.sum(axis=axes, keepdims=True)

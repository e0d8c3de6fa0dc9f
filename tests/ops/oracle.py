"""Float64 oracles of the ops, one loop per paper equation, independent of `lcsm_jax`.

Each takes an array module `xp`: `numpy` for values, or `jax.numpy` under `jax.enable_x64(True)`
so that `jax.grad` of the same loop gives float64 reference gradients. Nothing here calls the
package; the layouts are the reference libraries' (fla: [B, T, H, K]; mamba_ssm: [B, D, L]).
"""

from __future__ import annotations

import numpy as np


def _resets(segment_ids, T):
    if segment_ids is None:
        return [False] * T
    ids = np.asarray(segment_ids)
    return [False] + [bool(np.any(ids[:, t] != ids[:, t - 1])) for t in range(1, T)]


def gla(xp, q, k, v, g, scale, h0=None, segment_ids=None, bonus=None):
    """S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ; o_t = scale · q_tᵀ S_t (fla's naive GLA), or with
    `bonus` u [H, K] RWKV-6's o_t = scale · Σ_k r_t[k] (S_{t-1}[k] + u[k] k_t[k] v_t).
    g broadcastable to [B, T, H, K] or None. segment_ids: rows reset where their id changes."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = xp.zeros((B, H, K, V)) if h0 is None else h0
    ids = None if segment_ids is None else np.asarray(segment_ids)
    outs = []
    for t in range(T):
        if ids is not None and t > 0:
            keep = (ids[:, t] == ids[:, t - 1]).astype(np.float64)[:, None, None, None]
            S = S * keep
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        if bonus is not None:
            read = S + bonus[None, :, :, None] * kv
            outs.append(scale * xp.sum(q[:, t, :, :, None] * read, axis=2))
        decay = 1.0 if g is None else xp.exp(xp.broadcast_to(g, (B, T, H, K))[:, t])[..., None]
        S = decay * S + kv
        if bonus is None:
            outs.append(scale * xp.sum(q[:, t, :, :, None] * S, axis=2))
    return xp.stack(outs, axis=1), S


def hgrn(xp, x, g, h0=None):
    """h_t = exp(g_t) ⊙ h_{t-1} + x_t, o_t = h_t (fla's naive HGRN)."""
    B, T, D = x.shape
    h = xp.zeros((B, D)) if h0 is None else h0
    outs = []
    for t in range(T):
        h = xp.exp(g[:, t]) * h + x[:, t]
        outs.append(h)
    return xp.stack(outs, axis=1), h


def rwkv4(xp, w, u, k, v):
    """RWKV-4's WKV straight from its definition, O(T²), every sum shifted by its own max:
    wkv_t = (Σ_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (same with v = 1).

    All (t, i) pairs at once: E[b, t, i, c] is the exponent of pair (t, i) (-inf for i > t)."""
    T = k.shape[1]
    t, i = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    lag = (t - 1 - i).astype(np.float64)[None, :, :, None]
    keys = k[:, None, :, :]  # [B, 1, T (i), C]
    past = -lag * w[None, None, None, :] + keys
    now = u[None, None, None, :] + keys
    before, same = (i < t)[None, :, :, None], (i == t)[None, :, :, None]
    E = xp.where(before, past, xp.where(same, now, -xp.inf))
    m = xp.max(E, axis=2)[:, :, None, :]
    weights = xp.exp(E - m)
    return xp.sum(weights * v[:, None, :, :], axis=2) / xp.sum(weights, axis=2)


def selective_scan(xp, u, delta, A, Bm, Cm, D=None, z=None, delta_bias=None, softplus=False):
    """Mamba (arXiv 2312.00752, Alg. 2): Δ = softplus(delta + bias); x_t = exp(Δ_t A) x_{t-1}
    + Δ_t B_t u_t; y_t = C_t x_t; out = (y + D u) silu(z). u, delta [B, D, L]; A [D, N];
    B, C [B, N, L]."""
    Bsz, Dch, L = u.shape
    N = A.shape[1]
    dt = delta if delta_bias is None else delta + delta_bias[None, :, None]
    if softplus:
        dt = xp.log1p(xp.exp(dt))
    x = xp.zeros((Bsz, Dch, N))
    ys = []
    for t in range(L):
        x = xp.exp(dt[:, :, t, None] * A[None]) * x + (
            dt[:, :, t, None] * Bm[:, None, :, t] * u[:, :, t, None]
        )
        ys.append(xp.sum(x * Cm[:, None, :, t], axis=-1))
    y = xp.stack(ys, axis=-1)
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * z / (1 + xp.exp(-z))
    return y, x


def ssd(xp, x, dt, A, Bm, Cm, D=None, z=None, dt_bias=None, softplus=False, h0=None, seq_idx=None):
    """Mamba-2 (arXiv 2405.21060 §3): h_t = exp(Δ_t A_h) h_{t-1} + Δ_t x_t B_tᵀ (h [P, N]),
    y_t = h_t C_t, out = (y + D x) silu(z). x [B, L, H, P]; dt [B, L, H]; B, C [B, L, 1, N]."""
    Bsz, L, H, P = x.shape
    N = Bm.shape[-1]
    delta = dt if dt_bias is None else dt + dt_bias[None, None]
    if softplus:
        delta = xp.log1p(xp.exp(delta))
    h = xp.zeros((Bsz, H, P, N)) if h0 is None else h0
    ids = None if seq_idx is None else np.asarray(seq_idx)
    ys = []
    for t in range(L):
        if ids is not None and t > 0:
            h = h * (ids[:, t] == ids[:, t - 1]).astype(np.float64)[:, None, None, None]
        dA = xp.exp(delta[:, t] * A[None])[..., None, None]
        h = dA * h + delta[:, t, :, None, None] * x[:, t, :, :, None] * Bm[:, t, 0][:, None, None]
        ys.append(xp.sum(h * Cm[:, t, 0][:, None, None], axis=-1))
    y = xp.stack(ys, axis=1)
    if D is not None:
        y = y + D[None, None, :, None] * x
    if z is not None:
        y = y * z / (1 + xp.exp(-z))
    return y, h

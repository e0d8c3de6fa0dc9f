"""A float64 NumPy transcription of SPEC §2 (the LCSM layer), reading an `EOSLayer`'s parameters.

Written from the SPEC table, not from the layer: o is materialised as a full K×D array per step,
data-independent e is written into memory as E ⊙ (1 iᵀ) and read as Σ_r (m ⊙ S)[r, :], o_type 11
runs the 2K-row real rotation with absolute positions, o_type 12 the logcumsumexp with
L_{-1} = -inf.
"""

from __future__ import annotations

import math

import numpy as np


def _np(v) -> np.ndarray:
    return np.asarray(v[...], dtype=np.float64)


def _linear(x, lin):
    y = x @ _np(lin.kernel)
    if getattr(lin, "bias", None) is not None:
        y = y + _np(lin.bias)
    return y


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _elu(z):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


ACT = {
    0: lambda z: z,
    1: lambda z: np.maximum(z, 0),
    2: _sigmoid,
    3: lambda z: 1 + _elu(z),
    4: lambda z: z * _sigmoid(z),
    5: _elu,
    6: lambda z: np.maximum(z, 0) ** 2,
    7: lambda z: z**2,
}


def alibi(n: int) -> np.ndarray:
    def pow2(p):
        start = 2.0 ** (-(2.0 ** -(math.log2(p) - 3)))
        return [start * start**j for j in range(p)]

    if math.log2(n).is_integer():
        return np.array(pow2(n))
    lower = 2 ** math.floor(math.log2(n))
    return np.concatenate([pow2(lower), alibi(2 * lower)[0::2][: n - lower]])


def _heads(a, H):
    return a.reshape(*a.shape[:-1], H, a.shape[-1] // H)


def _oscillation(layer, cfg, x, B, T, H, K, D):
    """o [B, T, H, K, D] for o_type 0..10."""
    osc, tau, o_type = layer.oscillation, cfg.tau, cfg.o_type
    g = lambda z: _sigmoid(z) ** (1.0 / tau)  # noqa: E731
    proj = lambda lin: _heads(_linear(x, lin), H)  # noqa: E731
    shape = (B, T, H, K, D)
    if o_type in (0, 4, 5):
        sizes = {0: (K, D), 4: (K,), 5: (D,)}[o_type]
        if cfg.o_learned:
            o = g(_np(osc.p))  # [H, *sizes]
        else:
            o = np.exp(-alibi(int(np.prod(sizes))).reshape(sizes))[None]
        if o_type == 4:
            o = o[..., :, None]
        elif o_type == 5:
            o = o[..., None, :]
        return np.broadcast_to(o, shape)
    if o_type == 1:
        zk, zd = proj(osc.proj_k), proj(osc.proj_d)
        return g(zk)[..., :, None] * g(zd)[..., None, :]
    if o_type == 2:
        return np.broadcast_to(g(proj(osc.proj))[..., None, :], shape)
    if o_type == 3:
        return np.broadcast_to(g(proj(osc.proj))[..., :, None], shape)
    if o_type in (6, 7, 8, 9):
        z, p = proj(osc.proj), _np(osc.p)
        arg = {
            6: lambda: z[..., :, None] * p,
            7: lambda: z[..., None, :] * p,
            8: lambda: p[..., :, None] * z[..., None, :],
            9: lambda: z[..., :, None] * p[..., None, :],
        }[o_type]()
        return g(arg)
    if o_type == 10:
        return np.ones(shape)
    raise AssertionError(o_type)


def reference_output(layer, x) -> np.ndarray:
    """y [B, T, M] of `layer` (an EOSLayer) on x [B, T, M], in float64."""
    cfg = layer.config
    x = np.asarray(x, np.float64)
    B, T, M = x.shape
    H, K = cfg.num_heads, cfg.expand_dim
    D = M // H
    i = _heads(_linear(x, layer.inputs.proj), H)
    if cfg.c_type == 0:
        osc = layer.oscillation
        delta = np.logaddexp(0.0, _linear(_linear(x, osc.down), osc.up))
        delta = _heads(delta, H)
        i = delta * i
        A = -np.exp(_np(osc.a_log))
        o = np.exp(delta[..., None, :] * A)
        e = _heads(_linear(x, layer.expand.proj), H)
        s = _heads(_linear(x, layer.shrink.proj), H)
        e_param = s_param = None
    else:
        act = ACT[cfg.t_type]
        e = act(_heads(_linear(x, layer.expand.proj), H)) if cfg.e_type == 1 else None
        s = act(_heads(_linear(x, layer.shrink.proj), H)) if cfg.s_type == 1 else None
        e_param = act(_np(layer.expand.p)) if cfg.e_type == 0 else None
        s_param = act(_np(layer.shrink.p)) if cfg.s_type == 0 else None
        if cfg.o_type == 11:
            theta = 10000.0 ** (-2.0 / M * np.arange(K))
            angle = np.arange(T)[:, None] * theta  # [T, K]
            cos, sin = np.cos(angle)[None, :, None], np.sin(angle)[None, :, None]
            e = np.concatenate([e * cos, e * sin], axis=-1)
            s = np.concatenate([s * cos, s * sin], axis=-1)
            o = np.ones((B, T, H, 2 * K, D))
        elif cfg.o_type == 12:
            z = np.clip(_heads(_linear(x, layer.oscillation.proj), H), -10.0, 10.0)
            L = np.logaddexp.accumulate(z, axis=1)
            prev = np.concatenate([np.full_like(L[:, :1], -np.inf), L[:, :-1]], axis=1)
            ok = np.exp(prev - L)  # [B, T, H, K]
            e = (1.0 - ok) * e
            o = np.broadcast_to(ok[..., None], (B, T, H, K, D))
        else:
            o = _oscillation(layer, cfg, x, B, T, H, K, D)
    rows = o.shape[3]
    m = np.zeros((B, H, rows, D))
    y = np.zeros((B, T, H, D))
    for t in range(T):
        write = (
            e_param * i[:, t, :, None, :] if e is None else e[:, t, ..., None] * i[:, t, :, None]
        )
        m = o[:, t] * m + write
        read = s_param[None] * m if s is None else s[:, t, ..., None] * m
        y[:, t] = read.sum(axis=2)
    y = y.reshape(B, T, M)
    mu = y.mean(-1, keepdims=True)
    var = ((y - mu) ** 2).mean(-1, keepdims=True)
    ln = (y - mu) / np.sqrt(var + 1e-5) * _np(layer.norm.scale) + _np(layer.norm.bias)
    return ln @ _np(layer.out.kernel)

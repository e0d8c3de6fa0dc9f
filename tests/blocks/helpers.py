"""What the tests of the full blocks share: float64 NumPy building blocks of their oracles
(activations, linears, the causal depthwise conv, RMSNorm, packed-sequence starts), inputs,
a jitted forward, jitted decoding, checks against an oracle and of MIMO mixing, a tolerance
and ways to move parameters off their init."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@nnx.jit
def run(block, x, segment_ids=None):
    """`block(x, segment_ids=...)`, one compiled program per shape (eager dispatch compiles
    every primitive)."""
    return block(x, segment_ids=segment_ids)


@nnx.jit
def decode_and_parallel(mixer, x):
    """The outputs of `mixer.step` token by token through its cache (a scan from `init_cache`)
    and of the parallel `mixer(x)`, in one compiled program; x is [B, T, ...] (inputs or
    tokens)."""

    def one(cache, x_t):
        y_t, cache = mixer.step(x_t, cache)
        return cache, y_t

    _, ys = jax.lax.scan(one, mixer.init_cache(x.shape[0]), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1), mixer(x)


def inputs(shape, seed=1):
    """Deterministic N(0, 1) inputs, float32 (drawn by NumPy: nothing to compile)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def perturb(module, scale=0.2, seed=1):
    """Adds scale·N(0, 1) to every `nnx.Param` of `module` in place, deterministically, so that
    no parameter stays at its init (some blocks zero their output projection or LoRA factors
    there, which would hide the rest of the block). Returns `module`."""
    rng = np.random.default_rng(seed)
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Param):
            value = node[...]
            node[...] = value + (scale * rng.standard_normal(value.shape)).astype(value.dtype)
    return module


def sharpen_convs(convs, key):
    """Makes each `blocks.parts.CausalConv` of `convs` matter: weights ×20 plus 1 on the
    current tap, random biases (0.1·N(0, 1)) where there are biases."""
    for i, conv in enumerate(convs):
        w = conv.conv.weight[...]
        conv.conv.weight.set_value(w * 20 + jnp.zeros_like(w).at[0].set(1.0))
        if conv.bias is not None:
            conv.bias.set_value(0.1 * jax.random.normal(jax.random.fold_in(key, 2 + i), w[0].shape))


def close(y, ref, tol=1e-5):
    """|y - ref| <= tol · max|ref| everywhere."""
    ref = np.asarray(ref, np.float64)
    np.testing.assert_allclose(np.asarray(y, np.float64), ref, rtol=0, atol=tol * np.abs(ref).max())


# Two rows of packed sequences [2, 16]: 7 + 9 and 3 + 13 tokens.
PACKED_IDS = np.array([[0] * 7 + [1] * 9, [5] * 3 + [6] * 13])


def check_oracle(block, oracle, shape, segment_ids=None, tol=1e-5):
    """The jitted block equals `oracle(block, x[, segment_ids])` (float64) on N(0, 1) inputs of
    `shape`, on a signal that does not vanish."""
    x = inputs(shape)
    ref = oracle(block, x) if segment_ids is None else oracle(block, x, segment_ids)
    assert np.abs(ref).max() > 0.1
    close(run(block, x, segment_ids), ref, tol)


def check_mimo(block, shape):
    """One state shared by all channels: input channel 0 at t = 0 moves every output channel at
    every t >= 0, in batch row 0 only."""
    u = inputs(shape)
    y = np.asarray(run(block, jnp.concatenate([u.at[0, 0, 0].add(1.0), u])))
    delta = y[: shape[0]] - y[shape[0] :]
    assert np.all(np.abs(delta[0]) > 1e-7)
    assert np.all(delta[1:] == 0)


# --- float64 NumPy oracle parts ------------------------------------------------------------


def f64(a):
    return np.asarray(a, np.float64)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x / (1.0 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def rms_norm(x, eps):
    """x / RMS(x) over the last axis (no weight)."""
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps)


def starts(segment_ids, B, T):
    """Index of each token's sequence start [B, T] (all 0 without segment ids)."""
    ids = np.zeros((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = np.zeros((B, T), int)
    for b in range(B):
        for t in range(1, T):
            start[b, t] = start[b, t - 1] if ids[b, t] == ids[b, t - 1] else t
    return start


def linear(lin, a):
    """`nnx.Linear` in float64 (with its bias, if any)."""
    out = a @ f64(lin.kernel[...])
    return out if lin.bias is None else out + f64(lin.bias[...])


def causal_conv(conv, a, start):
    """A `blocks.parts.CausalConv` before its activation: depthwise, w[i] multiplies a_{t-i},
    restarting with each sequence (`start` from `starts`), plus the bias if any."""
    w = f64(conv.conv.weight[...])
    y = np.zeros_like(a)
    for b in range(a.shape[0]):
        for t in range(a.shape[1]):
            for i in range(w.shape[0]):
                if t - i >= start[b, t]:
                    y[b, t] += w[i] * a[b, t - i]
    return y if conv.bias is None else y + f64(conv.bias[...])

"""The paper's oscillation constructions, o_type 0..10 (SPEC §2), as oscillation stages.

g(z) = sigmoid(z)^(1/τ), kept in log space: log g(z) = logsigmoid(z)/τ, always in float32.
Each stage states the structure of the log-decay it hands to `eos.eos_scan`, which decides the
backend: separable decays (none, scalar, K-wise, D-wise, k[r] + d[c]) take the fast chunked path;
a full K×D log-decay needs a scan. A product inside g is not separable in log space
(log g(a·b) ≠ f(a) + h(b)), so o_types 6..9 are full even though their arguments are outer
products; only products outside g (o_type 1: g(z_k) g(z_d)) are separable. They reach the core
as `eos.ProductDecay` (the vector and the parameter, g applied inside the scan step), so no
[B,T,H,K,D] log-decay is built.

| o_type | log o handed to the core            | structure        |
|--------|-------------------------------------|------------------|
| 0      | log g(P) [1,1,H,K,D]                | full (DI)        |
| 1      | Decay(k=log g(z_k), d=log g(z_d))   | separable (DD)   |
| 2      | Decay(d=log g(W x))                 | D-wise (DD)      |
| 3      | Decay(k=log g(W x))                 | K-wise (DD)      |
| 4      | Decay(k=log g(P_k)) [1,1,H,K]       | K-wise (DI)      |
| 5      | Decay(d=log g(P_d)) [1,1,H,D]       | D-wise (DI)      |
| 6..9   | ProductDecay(z, P, log_sigmoid, 1/τ) | product (DD)    |
| 10     | 0                                   | none             |
| 11     | 0; the rotation moves into e and s  | none (2K rows)   |
| 12     | Decay(k=L_{t-1} - L_t)              | K-wise (DD)      |
| c_type 0 (SSM) | ProductDecay(d=Δ_t, p=A)     | product (DD)     |

o_types 11 and 12 live in `oscillation_time.py`, the SSM in `ssm.py`. With a data-independent e or
s (e_type or s_type 0) the read is elementwise (K×D), which also sends the call to a scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax import eos
from lcsm_jax.layers.activations import alibi_slopes
from lcsm_jax.layers.stages import _Stage, dense, heads, normal_param
from lcsm_jax.layers.terms import Context, Terms


def log_g(z: jax.Array, tau: float) -> jax.Array:
    """log sigmoid(z)^(1/τ), in float32."""
    return jax.nn.log_sigmoid(z.astype(jnp.float32)) / tau


class Oscillation(_Stage):
    """Base oscillation stage: no decay.

    Class attributes: STRUCTURE (what the core sees, for docs and benchmarks), OPTIONS (the
    LayerSpec options it reads, with defaults), COMPLEX (whether it makes e, i, s complex).
    """

    STRUCTURE = "none"
    OPTIONS: dict = {}
    COMPLEX = False

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.tau = float(spec.tau)

    def memory_rows(self) -> int:
        """Rows of the memory, K unless the stage expands e and s (o_type 11)."""
        return self.dims.K

    def init_lse(self, batch: int) -> jax.Array | None:
        """Initial running log-sum-exp for the state (only o_type 12 keeps one)."""
        return None

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(log_o=0)


class _Learnable(Oscillation):
    """A data-independent g(P) of shape `_shape()`, or the ALiBi decay exp(-slope) when
    o_learned=False (the intended sign: the official code has exp(+slope) for o_type 0 and keeps
    a random parameter for o_type 5)."""

    OPTIONS = {"o_learned": True}

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.learned = bool(spec.option("o_learned", True))
        if self.learned:
            self.p = normal_param(spec, rngs, (dims.H, *self._shape()))

    AXES: tuple[str, ...] = ()  # the parameter's axes, "K" and/or "D" (set by each o_type)

    def _shape(self) -> tuple[int, ...]:
        return tuple(getattr(self.dims, axis) for axis in self.AXES)

    def log_decay_HxN(self) -> jax.Array:
        """[H, *shape] (learned) or [1, *shape] (hand-crafted, shared by the heads) log o."""
        if self.learned:
            return log_g(self.p[...], self.tau)
        shape = self._shape()
        slopes = alibi_slopes(int(np.prod(shape))).reshape(shape)
        return jnp.asarray(-slopes, jnp.float32)[None]


class O0(_Learnable):
    """o = g(P), P in K×D."""

    STRUCTURE = "full"

    AXES = ("K", "D")

    def __call__(self, x_BxTxM, terms, ctx):
        return terms._replace(log_o=self.log_decay_HxN()[None, None])


class O4(_Learnable):
    """o = g(P) with P in R^K, broadcast over columns."""

    STRUCTURE = "k"

    AXES = ("K",)

    def __call__(self, x_BxTxM, terms, ctx):
        return terms._replace(log_o=eos.Decay(k=self.log_decay_HxN()[None, None]))


class O5(_Learnable):
    """o = g(P) with P in R^D, broadcast over rows."""

    STRUCTURE = "d"

    AXES = ("D",)

    def __call__(self, x_BxTxM, terms, ctx):
        return terms._replace(log_o=eos.Decay(d=self.log_decay_HxN()[None, None]))


class O1(Oscillation):
    """o[r,c] = g(z_k[r]) g(z_d[c]): separable, log o = log g(z_k) ⊕ log g(z_d)."""

    STRUCTURE = "separable"

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.proj_k = dense(spec, dims.M, dims.H * dims.K, rngs)
        self.proj_d = dense(spec, dims.M, dims.M, rngs)

    def __call__(self, x_BxTxM, terms, ctx):
        k = log_g(heads(self.proj_k(x_BxTxM), self.dims.H), self.tau)
        d = log_g(heads(self.proj_d(x_BxTxM), self.dims.H), self.tau)
        return terms._replace(log_o=eos.Decay(k=k, d=d))


class _Projected(Oscillation):
    """Holds one projection `proj` to K ("k") or D ("d") per head."""

    AXIS = "k"

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        width = dims.K if self.AXIS == "k" else dims.D
        self.proj = dense(spec, dims.M, dims.H * width, rngs)

    def z(self, x_BxTxM) -> jax.Array:
        return heads(self.proj(x_BxTxM), self.dims.H).astype(jnp.float32)


class O2(_Projected):
    """o = g(W x) in R^D, broadcast over rows."""

    STRUCTURE, AXIS = "d", "d"

    def __call__(self, x_BxTxM, terms, ctx):
        return terms._replace(log_o=eos.Decay(d=log_g(self.z(x_BxTxM), self.tau)))


class O3(_Projected):
    """o = g(W x) in R^K, broadcast over columns (GLA-like)."""

    STRUCTURE, AXIS = "k", "k"

    def __call__(self, x_BxTxM, terms, ctx):
        return terms._replace(log_o=eos.Decay(k=log_g(self.z(x_BxTxM), self.tau)))


class _ProjectedTimesParam(_Projected):
    """o = g(z ∘ P) with a data-dependent z and a parameter P combined inside g: full K×D,
    handed to the core in factored form (built step by step by the sequential backends)."""

    STRUCTURE = "product"

    PARAM_AXES: tuple[str, ...] = ()  # axes of P, "K" and/or "D" (set by each o_type)

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        shape = tuple(getattr(dims, axis) for axis in self.PARAM_AXES)
        self.p = normal_param(spec, rngs, (dims.H, *shape))

    def __call__(self, x_BxTxM, terms, ctx):
        p = _on_grid(self.p[...].astype(jnp.float32)[None, None], self.PARAM_AXES)
        z = {self.AXIS: self.z(x_BxTxM)}  # k= [B,T,H,K] or d= [B,T,H,D]
        log_o = eos.ProductDecay(**z, p=p, fn="log_sigmoid", scale=1.0 / self.tau)
        return terms._replace(log_o=log_o)


def _on_grid(x, axes: tuple[str, ...]):
    """x with trailing axes `axes` placed on the [K, D] grid (a missing axis gets size 1)."""
    if axes == ("K",):
        return x[..., :, None]
    if axes == ("D",):
        return x[..., None, :]
    return x


class O6(_ProjectedTimesParam):
    """o = g((W x)_k[:, None] · P), P in K×D."""

    AXIS = "k"
    PARAM_AXES = ("K", "D")


class O7(_ProjectedTimesParam):
    """o = g((W x)_d[None, :] · P), P in K×D."""

    AXIS = "d"
    PARAM_AXES = ("K", "D")


class O8(_ProjectedTimesParam):
    """o = g(P_k[:, None] · (W x)_d[None, :])."""

    AXIS = "d"
    PARAM_AXES = ("K",)


class O9(_ProjectedTimesParam):
    """o = g((W x)_k[:, None] · P_d[None, :])."""

    AXIS = "k"
    PARAM_AXES = ("D",)


class O10(Oscillation):
    """o = 1: plain linear attention, no decay."""

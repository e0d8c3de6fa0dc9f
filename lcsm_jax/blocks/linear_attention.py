"""Linear attention with a feature map (Katharopoulos, Vyas, Pappas and Fleuret, "Transformers
are RNNs: Fast Autoregressive Transformers with Linear Attention", arXiv 2006.16236, §3.2-3.4),
as `LinearAttention` of github:fla-org/flash-linear-attention, fla/layers/linear_attn.py, builds
it:

    q, k, v = φ(W_q x), φ(W_k x), W_v x                          (per head)
    S_t = S_{t-1} + k_t v_tᵀ,   o_t = K^-½ S_tᵀ q_t               (`ops.linear_attn`)
    o_t ← o_t / (K^-½ q_t · Σ_{i<=t} k_i + 1e-10)                  (`normalize`: the paper's eq. 6)
    y = W_o RMSNorm_head(o)                                       (fla's output norm)

Feature maps: "elu" φ(x) = 1 + elu(x) (the paper's, eq. 7, and this block's default; fla's own
default is its Hadamard map), "relu", "identity", and "hedgehog" (Zhang et al., arXiv
2402.04347, fla's `HedgehogFeatureMap`: φ(x) = softmax([2 W x + b, -(2 W x + b)]) over 2K, with
one trainable W, b per q and k shared by the heads, initialised to the identity and zero as that
module does). The denominator is a second `ops.linear_attn` with v = 1, so it restarts with each
packed sequence and its running Σ k is kept in the decoding cache. fla's defaults otherwise:
8 heads, expand_k = expand_v = 1, `do_feature_map_norm=False`, RMSNorm with a weight (eps
1e-5); linears N(0, 0.02²) as its model init. fla's `norm_q` / `norm_k` / `tie_feature_map_qk`
options and its other feature maps are left out.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.parts import (
    HeadRMSNorm,
    check_heads,
    check_positive,
    check_positive_ints,
    check_scan_options,
)
from lcsm_jax.nn.init import dense

FEATURE_MAPS = ("elu", "relu", "identity", "hedgehog")
OUTPUT_NORMS = ("rmsnorm", "identity")
NORMALIZE_EPS = 1e-10  # fla's, added to the denominator


class HedgehogMap(nnx.Module):
    """softmax([2(W x + b), -2(W x + b)]) over the last axis, W = I and b = 0 at init."""

    def __init__(self, head_dim: int, *, rngs: nnx.Rngs):
        self.layer = nnx.Linear(
            head_dim,
            head_dim,
            kernel_init=lambda key, shape, dtype: jnp.eye(shape[0], dtype=dtype),
            bias_init=nnx.initializers.zeros,
            rngs=rngs,
        )

    def __call__(self, x):
        y = 2.0 * self.layer(x)
        return jax.nn.softmax(jnp.concatenate([y, -y], axis=-1), axis=-1)


def _elementwise_map(name):
    return {"elu": lambda x: 1.0 + jax.nn.elu(x), "relu": jax.nn.relu, "identity": lambda x: x}[
        name
    ]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearAttentionConfig:
    """embed_dim M; num_heads H; expand_k / expand_v (key and value widths int(M·expand_*),
    split over H heads); feature_map (one of FEATURE_MAPS); normalize (divide by q·Σk, the
    paper's denominator; fla's do_feature_map_norm); output_norm ("rmsnorm" or "identity") and
    norm_eps; backend and chunk_size go to `ops.linear_attn`."""

    embed_dim: int
    num_heads: int = 8
    expand_k: float = 1.0
    expand_v: float = 1.0
    feature_map: str = "elu"
    normalize: bool = False
    output_norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_positive_ints(self, ("embed_dim", "num_heads"))
        check_positive(self, ("expand_k", "expand_v", "norm_eps"))
        check_heads(self, ("key_dim", "value_dim"))
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(
                f"LinearAttentionConfig.feature_map must be one of {FEATURE_MAPS}, got "
                f"{self.feature_map!r}"
            )
        if self.output_norm not in OUTPUT_NORMS:
            raise ValueError(
                f"LinearAttentionConfig.output_norm must be one of {OUTPUT_NORMS}, got "
                f"{self.output_norm!r}"
            )
        if not isinstance(self.normalize, bool):
            raise ValueError(
                f"LinearAttentionConfig.normalize must be a bool, got {self.normalize!r}"
            )
        check_scan_options(self)

    @property
    def key_dim(self) -> int:
        return int(self.embed_dim * self.expand_k)

    @property
    def value_dim(self) -> int:
        return int(self.embed_dim * self.expand_v)

    @property
    def feature_dim(self) -> int:
        """The per-head width of φ(q), φ(k): hedgehog doubles it."""
        K = self.key_dim // self.num_heads
        return 2 * K if self.feature_map == "hedgehog" else K


class LinearAttentionBlock(nnx.Module):
    """Linear attention x [B, T, M] -> [B, T, M]; `step` decodes one token with the state
    [B, H, K, V] (and, with `normalize`, the running Σk as [B, H, K, 1]) in the cache."""

    def __init__(self, config: LinearAttentionConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, LinearAttentionConfig):
            raise TypeError(f"config must be a LinearAttentionConfig, got {type(config).__name__}")
        self.config = config
        cfg, M = config, config.embed_dim
        Dk, Dv, H = cfg.key_dim, cfg.value_dim, cfg.num_heads
        self.q_proj = dense(M, Dk, rngs)
        self.k_proj = dense(M, Dk, rngs)
        self.v_proj = dense(M, Dv, rngs)
        hedgehog = cfg.feature_map == "hedgehog"
        self.q_map = HedgehogMap(Dk // H, rngs=rngs) if hedgehog else None
        self.k_map = HedgehogMap(Dk // H, rngs=rngs) if hedgehog else None
        self.norm = HeadRMSNorm(Dv // H, eps=cfg.norm_eps) if cfg.output_norm == "rmsnorm" else None
        self.o_proj = dense(Dv, M, rngs)

    def _phi(self, which, x_BxTxHxK):
        feature_map = self.q_map if which == "q" else self.k_map
        if feature_map is not None:
            return feature_map(x_BxTxHxK)
        return _elementwise_map(self.config.feature_map)(x_BxTxHxK)

    def _mix(self, x_BxTxM, segment_ids, cache):
        cfg, H = self.config, self.config.num_heads
        B, T, _ = x_BxTxM.shape
        heads = lambda a: a.reshape(B, T, H, a.shape[-1] // H)  # noqa: E731
        q_BxTxHxK = self._phi("q", heads(self.q_proj(x_BxTxM)))
        k_BxTxHxK = self._phi("k", heads(self.k_proj(x_BxTxM)))
        scan = dict(
            output_final_state=True,
            segment_ids=segment_ids,
            backend=cfg.backend,
            chunk_size=cfg.chunk_size,
        )
        o_BxTxHxV, state = ops.linear_attn(
            q_BxTxHxK,
            k_BxTxHxK,
            heads(self.v_proj(x_BxTxM)),
            initial_state=None if cache is None else cache["state"],
            **scan,
        )
        new_cache = {"state": state}
        if cfg.normalize:
            # K^-½ q_t · Σ_{i<=t} k_i: the same scan with v = 1, so packing and decoding hold.
            ones = jnp.ones((B, T, H, 1), q_BxTxHxK.dtype)
            z_BxTxHx1, new_cache["z"] = ops.linear_attn(
                q_BxTxHxK,
                k_BxTxHxK,
                ones,
                initial_state=None if cache is None else cache["z"],
                **scan,
            )
            o = o_BxTxHxV.astype(jnp.float32) / (z_BxTxHx1.astype(jnp.float32) + NORMALIZE_EPS)
            o_BxTxHxV = o.astype(o_BxTxHxV.dtype)
        if self.norm is not None:
            o_BxTxHxV = self.norm(o_BxTxHxV)
        return self.o_proj(o_BxTxHxV.reshape(B, T, cfg.value_dim)), new_cache

    def __call__(self, x_BxTxM, *, segment_ids=None):
        return self._mix(x_BxTxM, segment_ids, None)[0]

    def init_cache(self, batch_size: int):
        cfg, H = self.config, self.config.num_heads
        K, V = cfg.feature_dim, cfg.value_dim // H
        cache = {"state": jnp.zeros((batch_size, H, K, V), jnp.float32)}
        if cfg.normalize:
            cache["z"] = jnp.zeros((batch_size, H, K, 1), jnp.float32)
        return cache

    def step(self, x_BxM, cache):
        y, cache = self._mix(x_BxM[:, None], None, cache)
        return y[:, 0], cache

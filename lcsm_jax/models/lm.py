"""A causal language model: tied embeddings, N pre-LayerNorm residual blocks, final LayerNorm.

The sequence mixer of every block is any catalogue entry (`catalogue.build`; the softmax-attention
baseline alone gets learned absolute positions); the channel mixer is a GLU MLP or the identity
(the LCSM paper's MQAR setting).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.models.mlp import GLU, GLU_KINDS
from lcsm_jax.nn.conv import ShortConv
from lcsm_jax.nn.init import INIT_STD, make_layer_norm

CHANNEL_MIXERS = ("none", *GLU_KINDS)
# LMConfig fields the attention mixer reads (its heads and KV-cache length).
ATTENTION_FIELDS = ("num_heads", "max_len")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Model shape. `mixer` is a `catalogue.names()` entry, built at width d_model with
    `mixer_options` ((name, value) pairs; checked against the entry when the config is made)."""

    vocab_size: int
    d_model: int = 128
    num_layers: int = 2
    mixer: str = "gla_core"
    mixer_options: tuple[tuple[str, object], ...] = ()
    channel_mixer: str = "none"
    mlp_ratio: float = 8 / 3
    num_heads: int = 1  # attention only; other mixers take heads from mixer_options
    max_len: int = 2048  # attention only: learned positions and KV-cache length
    embed_dropout: float = 0.0
    short_conv: int = 0  # kernel of a causal depthwise conv before each mixer (0: none)

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "num_layers", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"LMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.channel_mixer not in CHANNEL_MIXERS:
            raise ValueError(
                f"LMConfig.channel_mixer={self.channel_mixer!r}; valid: {', '.join(CHANNEL_MIXERS)}"
            )
        if self.short_conv < 0:
            raise ValueError(f"LMConfig.short_conv must be >= 0, got {self.short_conv}")
        if not 0 <= self.embed_dropout < 1:
            raise ValueError(f"LMConfig.embed_dropout must be in [0, 1), got {self.embed_dropout}")
        catalogue.check(self.mixer, embed_dim=self.d_model, **self.mixer_kwargs())

    @property
    def positions(self) -> bool:
        """Whether the model adds learned absolute positions (the attention mixer has none)."""
        return self.mixer == catalogue.ATTENTION

    def mixer_kwargs(self) -> dict:
        """The overrides `catalogue.build` gets: `mixer_options`, and for attention num_heads and
        max_len from this config (mixer_options may repeat them only with the same value)."""
        options = dict(self.mixer_options)
        if not self.positions:
            return options
        for name in ATTENTION_FIELDS:
            value = getattr(self, name)
            if options.setdefault(name, value) != value:
                raise ValueError(
                    f"mixer_options {name}={options[name]!r} disagrees with LMConfig.{name}="
                    f"{value!r}; the attention mixer reads LMConfig.{name}"
                )
        return options


class Block(nnx.Module):
    """h + mixer(LN(h)), then h + MLP(LN(h)) when the channel mixer is not the identity."""

    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs):
        self.norm1 = make_layer_norm(config.d_model, rngs)
        self.conv = nnx.data(None)
        if config.short_conv:
            self.conv = ShortConv(config.d_model, config.short_conv, rngs=rngs)
        self.mixer = catalogue.build(
            config.mixer, embed_dim=config.d_model, rngs=rngs, **config.mixer_kwargs()
        )
        self.norm2 = self.mlp = nnx.data(None)
        if config.channel_mixer in GLU_KINDS:
            self.norm2 = make_layer_norm(config.d_model, rngs)
            kind = GLU_KINDS[config.channel_mixer]
            self.mlp = GLU(config.d_model, ratio=config.mlp_ratio, kind=kind, rngs=rngs)

    def _channel(self, h):
        return h if self.mlp is None else h + self.mlp(self.norm2(h))

    def __call__(self, h_BxTxM, segment_ids=None):
        x = self.norm1(h_BxTxM)
        if self.conv is not None:
            x = self.conv(x, segment_ids)
        return self._channel(h_BxTxM + self.mixer(x, segment_ids=segment_ids))

    def init_cache(self, batch_size: int, embed_dim: int):
        conv = None if self.conv is None else self.conv.init_cache(batch_size, embed_dim)
        return {"conv": conv, "mixer": self.mixer.init_cache(batch_size)}

    def step(self, h_BxM, cache):
        x, conv = self.norm1(h_BxM), cache["conv"]
        if self.conv is not None:
            x, conv = self.conv.step(x, conv)
        y, mixer = self.mixer.step(x, cache["mixer"])
        return self._channel(h_BxM + y), {"conv": conv, "mixer": mixer}


class LanguageModel(nnx.Module):
    """tokens [B, T] -> logits [B, T, V] (float32); `init_cache` / `step` decode token by token."""

    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs):
        self.config = config
        init = nnx.initializers.normal(INIT_STD)
        self.embed = nnx.Embed(config.vocab_size, config.d_model, embedding_init=init, rngs=rngs)
        self.pos = nnx.data(None)
        if config.positions:
            self.pos = nnx.Param(init(rngs.params(), (config.max_len, config.d_model)))
        self.dropout = nnx.Dropout(config.embed_dropout)
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.num_layers)])
        self.norm = make_layer_norm(config.d_model, rngs)

    def _positions(self, start, length: int):
        if self.pos is None:
            return 0
        return jax.lax.dynamic_slice_in_dim(self.pos[...], start, length, axis=0)

    def __call__(self, tokens_BxT, *, segment_ids=None, dropout_key=None):
        """Logits [B, T, V]; embedding dropout only when a `dropout_key` is given (training)."""
        T = tokens_BxT.shape[1]
        if self.pos is not None and T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.config.max_len}")
        h = self.embed(tokens_BxT)
        if self.pos is not None:
            h = h + self._positions(0, T)[None]
        h = self.dropout(h, deterministic=dropout_key is None, rngs=dropout_key)
        for block in self.blocks:
            h = block(h, segment_ids)
        return self.embed.attend(self.norm(h)).astype(jnp.float32)

    def init_cache(self, batch_size: int):
        return {
            "pos": jnp.zeros((), jnp.int32),
            "blocks": [block.init_cache(batch_size, self.config.d_model) for block in self.blocks],
        }

    def step(self, tokens_B, cache):
        """One token per sequence: tokens [B] -> (logits [B, V], cache); O(1) per token for EOS."""
        h = self.embed(tokens_B)
        if self.pos is not None:
            h = h + self._positions(cache["pos"], 1)
        caches = []
        for block, block_cache in zip(self.blocks, cache["blocks"], strict=True):
            h, block_cache = block.step(h, block_cache)
            caches.append(block_cache)
        logits = self.embed.attend(self.norm(h)).astype(jnp.float32)
        return logits, {"pos": cache["pos"] + 1, "blocks": caches}

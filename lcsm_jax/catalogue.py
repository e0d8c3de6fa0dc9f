"""Every sequence mixer by name: published linear-complexity methods as EOS settings (SPEC §3),
the paper grid, Monarch Mixer and the softmax-attention baseline, one entry each, built by
`build` (validated without building by `check`). Every built layer satisfies
`lcsm_jax.nn.mixer.Mixer`.

Two kinds of entry name a published method:
- `<method>` (gla, mamba, mamba2, retnet, hgrn2, linear_attention, rwkv4, rwkv6, lru, s5,
  deltanet, gated_deltanet): the full block as its paper and official code define it
  (projections, short convolutions, gates, norms, the paper's initialisation), from
  `lcsm_jax.blocks`, over the ops of `lcsm_jax.ops`.
- `<method>_core`: only the method's EOS core inside the shared skeleton of the LCSM paper
  (W_i in, W_out LayerNorm out), which is how the paper compares methods. Each is data: its
  paper and the stage choices of the `EOSMixer` (i = input stage, e = expand, s = shrink,
  o = oscillation; see `lcsm_jax.layers`). Gates, short convolutions and normalisers of the full
  blocks are not part of it.

    layer = catalogue.build("gla", embed_dim=256, rngs=nnx.Rngs(0), num_heads=4)       # block
    layer = catalogue.build("gla_core", embed_dim=256, rngs=nnx.Rngs(0), num_heads=4)  # EOS core
    layer = catalogue.build("lcsm", embed_dim=256, rngs=nnx.Rngs(0), o_type=3, tau=8)
    layer = catalogue.build("attention", embed_dim=256, rngs=nnx.Rngs(0), num_heads=4, max_len=512)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx

from lcsm_jax import blocks
from lcsm_jax.attention import AttentionConfig, CausalAttention
from lcsm_jax.layers.config import EOSConfig
from lcsm_jax.layers.eos_layer import EOSLayer
from lcsm_jax.layers.mixer import EOSMixer
from lcsm_jax.layers.registry import OSCILLATIONS
from lcsm_jax.layers.settings import SETTINGS
from lcsm_jax.layers.spec import PER_CHANNEL, LayerSpec
from lcsm_jax.lrcssm import LrcConfig, LrcMixer
from lcsm_jax.m2 import M2Config, M2Mixer
from lcsm_jax.nn.mixer import Mixer

# LayerSpec fields a caller may override (the shared `LayerSettings` but the width, which `build`
# takes by itself); the stage choices define the method and stay fixed.
OVERRIDABLE = tuple(name for name in SETTINGS if name != "embed_dim")


@dataclasses.dataclass(frozen=True)
class Method:
    """A published method: its paper (arXiv id) and its EOS stages as `LayerSpec` fields."""

    paper: str
    arxiv: str
    stages: tuple[tuple[str, Any], ...]
    options: tuple[tuple[str, Any], ...] = ()


def _method(paper: str, arxiv: str, options: dict | None = None, **stages) -> Method:
    return Method(paper, arxiv, tuple(stages.items()), tuple((options or {}).items()))


METHODS = {
    # e = φ(W_k x), o = 1, s = φ(W_q x), φ = 1 + ELU.
    "linear_attention_core": _method(
        "Katharopoulos et al., Transformers are RNNs (ICML 2020)",
        "2006.16236",
        activation="one_plus_elu",
        oscillation="none",
    ),
    # Fixed scalar decay λ_h = 1 - 2^(-5-h) per head (TransNormerLLM, arXiv 2307.14995, likewise).
    "retnet_core": _method(
        "Sun et al., Retentive Network (2023); Qin et al., TransNormerLLM (2023)",
        "2307.08621",
        oscillation="retnet",
    ),
    # o = exp(iθ), fixed unit modulus, output Re; e, s = ReLU projections.
    "cosformer_core": _method(
        "Qin et al., cosFormer: Rethinking Softmax in Attention (ICLR 2022)",
        "2202.08791",
        activation="relu",
        oscillation="cosformer",
    ),
    # o = exp(iΘ), Θ in R^K learned, output Re.
    "lrpe_core": _method(
        "Qin et al., Linearized Relative Positional Encoding (TMLR 2023)",
        "2307.09270",
        oscillation="lrpe",
    ),
    # o = α_t 1ᵀ, α_t = sigmoid(W x)^(1/16): the paper grid's o_type 3 with τ = 16.
    "gla_core": _method(
        "Yang et al., Gated Linear Attention Transformers (ICML 2024)",
        "2312.06635",
        oscillation="o3",
        tau=16.0,
    ),
    # e = 1 - f_t, o = f_t 1ᵀ with f_t lower-bounded.
    "hgrn2_core": _method(
        "Qin et al., HGRN2: Gated Linear RNNs with State Expansion (COLM 2024)",
        "2404.07904",
        expand="ones",
        oscillation="hgrn2",
    ),
    # e = B_t, o = exp(Δ_t ⊗ A) (full K×D), s = C_t, i = Δ_t ⊙ u_t; Δ with bias, rank 16.
    "mamba_core": _method(
        "Gu and Dao, Mamba: Linear-Time Sequence Modeling with Selective State Spaces (2023)",
        "2312.00752",
        options={"rank": 16, "dt_bias": True},
        oscillation="selective_ssm",
        expand_dim=16,
    ),
    # Scalar exp(Δ_t A_h) per head, i = Δ_t u_t.
    "mamba2_core": _method(
        "Dao and Gu, Transformers are SSMs: Mamba-2 / SSD (ICML 2024)",
        "2405.21060",
        oscillation="scalar_ssm",
    ),
    # DI diagonal exp(ΔΛ) (complex), e = B̄, s = C, i = u. DSS (2203.14343) and S5 (2208.04933)
    # are the same EOS setting with other initialisations / a shared Λ across channels.
    "s4d_core": _method(
        "Gu et al., On the Parameterization and Initialization of Diagonal SSMs (S4D, 2022)",
        "2206.11893",
        inputs="identity",
        expand="ones",
        shrink="none",
        oscillation="s4d",
        expand_dim=32,
    ),
    # λ = exp(-exp(ν) + iθ) (DI complex), e = γ ⊙ B, s = C, i = x.
    "lru_core": _method(
        "Orvieto et al., Resurrecting Recurrent Neural Networks for Long Sequences (ICML 2023)",
        "2303.06349",
        inputs="identity",
        expand="ones",
        shrink="none",
        oscillation="lru",
    ),
    # Numerator of the WKV: e = exp(k_t), o = exp(-w) per channel, s = sigmoid(r_t), i = v_t.
    "rwkv4_core": _method(
        "Peng et al., RWKV: Reinventing RNNs for the Transformer Era (2023)",
        "2305.13048",
        expand="exp_proj",
        shrink="sigmoid_proj",
        oscillation="rwkv4",
        num_heads=PER_CHANNEL,
        expand_dim=1,
    ),
    # EMA part: e = α, o = 1 - α ⊙ δ, s = η (all DI K×D), i = x.
    "mega_ema_core": _method(
        "Ma et al., Mega: Moving Average Equipped Gated Attention (ICLR 2023)",
        "2209.10655",
        inputs="identity",
        expand="ones",
        shrink="param",
        oscillation="mega_ema",
        expand_dim=16,
    ),
}
LCSM = Method(
    "Qin et al., Unlocking the Secrets of Linear Complexity Sequence Model from A Unified "
    "Perspective (2024): the paper grid, any EOSConfig cell",
    "2405.17383",
    (),
)
M2 = Method("Fu et al., Monarch Mixer (NeurIPS 2023)", "2310.12109", ())
LRCSSM = Method(
    "Farsang et al., Scaling Up Liquid-Resistance Liquid-Capacitance Networks for Efficient "
    "Sequence Modeling (2025)",
    "2505.21717",
    (),
)
SOFTMAX_ATTENTION = Method(
    "Vaswani et al., Attention Is All You Need (NeurIPS 2017)", "1706.03762", ()
)


@dataclasses.dataclass(frozen=True)
class Family:
    """An entry built from its own frozen config class: `layer(config(embed_dim=..., **fixed,
    **overrides), rngs=...)`; its overrides are the config's other fields."""

    method: Method
    config: type
    layer: type
    fixed: tuple[tuple[str, Any], ...] = ()

    def takes(self) -> list[str]:
        fixed = {"embed_dim", *dict(self.fixed)}
        return [f.name for f in dataclasses.fields(self.config) if f.name not in fixed]


def _paper(paper: str, arxiv: str) -> Method:
    return Method(paper, arxiv, ())


# The full published blocks (`lcsm_jax.blocks`), each built from its own config class.
BLOCKS = {
    "linear_attention": Family(
        _paper("Katharopoulos et al., Transformers are RNNs (ICML 2020)", "2006.16236"),
        blocks.LinearAttentionConfig,
        blocks.LinearAttentionBlock,
    ),
    "retnet": Family(
        _paper("Sun et al., Retentive Network (2023)", "2307.08621"),
        blocks.RetNetConfig,
        blocks.RetNetBlock,
    ),
    "gla": Family(
        _paper("Yang et al., Gated Linear Attention Transformers (ICML 2024)", "2312.06635"),
        blocks.GLAConfig,
        blocks.GLABlock,
    ),
    "hgrn2": Family(
        _paper(
            "Qin et al., HGRN2: Gated Linear RNNs with State Expansion (COLM 2024)", "2404.07904"
        ),
        blocks.HGRN2Config,
        blocks.HGRN2Block,
    ),
    "mamba": Family(
        _paper(
            "Gu and Dao, Mamba: Linear-Time Sequence Modeling with Selective State Spaces (2023)",
            "2312.00752",
        ),  # fmt: skip
        blocks.MambaConfig,
        blocks.MambaBlock,
    ),
    "mamba2": Family(
        _paper("Dao and Gu, Transformers are SSMs: Mamba-2 / SSD (ICML 2024)", "2405.21060"),
        blocks.Mamba2Config,
        blocks.Mamba2Block,
    ),
    "rwkv4": Family(
        _paper("Peng et al., RWKV: Reinventing RNNs for the Transformer Era (2023)", "2305.13048"),
        blocks.RWKV4Config,
        blocks.RWKV4Block,
    ),
    "rwkv6": Family(
        _paper("Peng et al., Eagle and Finch: RWKV with Matrix-Valued States (2024)", "2404.05892"),
        blocks.RWKV6Config,
        blocks.RWKV6Block,
    ),
    "lru": Family(
        _paper(
            "Orvieto et al., Resurrecting Recurrent Neural Networks for Long Sequences (ICML 2023)",
            "2303.06349",
        ),  # fmt: skip
        blocks.LRUConfig,
        blocks.LRUBlock,
    ),
    "s5": Family(
        _paper(
            "Smith et al., Simplified State Space Layers for Sequence Modeling (ICLR 2023)",
            "2208.04933",
        ),  # fmt: skip
        blocks.S5Config,
        blocks.S5Block,
    ),
    "deltanet": Family(
        _paper(
            "Yang et al., Parallelizing Linear Transformers with the Delta Rule over Sequence "
            "Length (NeurIPS 2024)",
            "2406.06484",
        ),  # fmt: skip
        blocks.DeltaNetConfig,
        blocks.DeltaNetBlock,
    ),
    "gated_deltanet": Family(
        _paper(
            "Yang et al., Gated Delta Networks: Improving Mamba2 with Delta Rule (ICLR 2025)",
            "2412.06464",
        ),  # fmt: skip
        blocks.GatedDeltaNetConfig,
        blocks.GatedDeltaNetBlock,
    ),
}

ATTENTION = "attention"  # the one entry without positional information of its own
# Entries that are not one EOS method: the paper grid, Monarch Mixer (`lcsm_jax.m2`; "m2" is the
# Hyena long conv, "m2_ssm" its recurrent EOS form), LrcSSM (`lcsm_jax.lrcssm`) and the quadratic
# baseline (`lcsm_jax.attention`).
FAMILIES = {
    "lcsm": Family(LCSM, EOSConfig, EOSLayer),
    **BLOCKS,
    "m2": Family(M2, M2Config, M2Mixer, (("kernel", "hyena"),)),
    "m2_ssm": Family(M2, M2Config, M2Mixer, (("kernel", "ssm"),)),
    "lrcssm": Family(LRCSSM, LrcConfig, LrcMixer),
    ATTENTION: Family(SOFTMAX_ATTENTION, AttentionConfig, CausalAttention),
}
Config = Any  # the entry's frozen config: EOSConfig, LayerSpec, a block's, M2Config, ...


def names() -> list[str]:
    """Names `build` accepts: "lcsm" (the paper grid), the EOS cores of the published methods
    (`<method>_core`), the full blocks, then M2, LrcSSM and softmax attention."""
    return ["lcsm", *METHODS, *(name for name in FAMILIES if name != "lcsm")]


def method(name: str) -> Method:
    """The catalogue entry (paper, arXiv id, stages) called `name`."""
    if name in FAMILIES:
        return FAMILIES[name].method
    if name not in METHODS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return METHODS[name]


def check(name: str, *, embed_dim: int | None = None, **overrides) -> None:
    """Raises what `build(name, embed_dim=embed_dim, **overrides)` would raise about its
    arguments, without building any parameter. Without `embed_dim` only the name and the names
    of the overrides are checked (whether a value is valid may depend on the width).

    Raises:
      ValueError: unknown name (the message lists the valid ones), an override the entry does
        not take (the message lists those it takes) or, with `embed_dim`, an invalid value.
    """
    if embed_dim is None:
        _check_names(name, overrides)
    else:
        _config(name, embed_dim, overrides)


def build(name: str, *, embed_dim: int, rngs: nnx.Rngs, **overrides) -> Mixer:
    """Builds the layer for catalogue entry `name` at width `embed_dim`.

    For a method's EOS core (`<method>_core`), `overrides` are sizes, dtypes and backend
    (`OVERRIDABLE`) or options of its oscillation (e.g. lower_bound for "hgrn2_core", max_len
    for "cosformer_core"), and the layer is an `EOSMixer`. For the other entries they are the
    fields of the entry's config (`FAMILIES`): the block's config for a full block (e.g.
    `blocks.GLAConfig` for "gla": num_heads, expand_k, ...), `EOSConfig` for "lcsm" (o_type=...,
    e_type=..., ...; an `EOSLayer`),
    `M2Config` for "m2" and "m2_ssm" (an `M2Mixer`), `LrcConfig` for "lrcssm" (an `LrcMixer`),
    `AttentionConfig` for "attention" (num_heads, max_len; a `CausalAttention`).

    Raises:
      ValueError: as `check`.
    """
    config = _config(name, embed_dim, overrides)
    layer = FAMILIES[name].layer if name in FAMILIES else EOSMixer
    return layer(config, rngs=rngs)


def _check_names(name: str, overrides: dict) -> None:
    entry = method(name)
    if name in FAMILIES:
        takes, options = FAMILIES[name].takes(), {}
    else:
        takes, options = list(OVERRIDABLE), OSCILLATIONS[dict(entry.stages)["oscillation"]].OPTIONS
    for key in overrides:
        if key not in takes and key not in options:
            raise ValueError(
                f"{name!r} does not take {key!r}; it takes {', '.join(takes)}"
                + (f" and its options {', '.join(options)}" if options else "")
            )


def _config(name: str, embed_dim: int, overrides: dict) -> Config:
    """The frozen config `build` makes the layer from (`LayerSpec` for an EOS method)."""
    _check_names(name, overrides)
    if name in FAMILIES:
        family = FAMILIES[name]
        return family.config(embed_dim=embed_dim, **dict(family.fixed), **overrides)
    entry = METHODS[name]
    fields, options = dict(entry.stages), dict(entry.options)
    for key, value in overrides.items():
        (fields if key in OVERRIDABLE else options)[key] = value
    return LayerSpec(embed_dim=embed_dim, options=tuple(sorted(options.items())), **fields)

"""Published linear-complexity methods as EOS settings (SPEC §3), one entry each, built by `build`.

Each entry is data: its paper and the stage choices of the shared `EOSMixer` skeleton
(i = input stage, e = expand, s = shrink, o = oscillation; see `lcsm_jax.layers`). Every entry is
the method's EOS core inside the common layer (W_i in, W_out LayerNorm out); gates, short
convolutions and normalisers of the full published blocks are not part of it.

    layer = catalogue.build("gla", embed_dim=256, rngs=nnx.Rngs(0), num_heads=4)
    layer = catalogue.build("lcsm", embed_dim=256, rngs=nnx.Rngs(0), o_type=3, tau=8)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx

from lcsm_jax.layers.config import EOSConfig
from lcsm_jax.layers.eos_layer import EOSLayer
from lcsm_jax.layers.mixer import EOSMixer
from lcsm_jax.layers.registry import OSCILLATIONS
from lcsm_jax.layers.spec import PER_CHANNEL, LayerSpec
from lcsm_jax.m2 import M2Mixer
from lcsm_jax.m2.config import from_options as m2_config

# LayerSpec fields a caller may override; the stage choices define the method and stay fixed.
OVERRIDABLE = (
    "num_heads",
    "expand_dim",
    "tau",
    "bias",
    "backend",
    "chunk_size",
    "dtype",
    "param_dtype",
    "projection",
    "nblocks",
)


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
    "linear_attention": _method(
        "Katharopoulos et al., Transformers are RNNs (ICML 2020)",
        "2006.16236",
        activation="one_plus_elu",
        oscillation="none",
    ),
    # Fixed scalar decay λ_h = 1 - 2^(-5-h) per head (TransNormerLLM, arXiv 2307.14995, likewise).
    "retnet": _method(
        "Sun et al., Retentive Network (2023); Qin et al., TransNormerLLM (2023)",
        "2307.08621",
        oscillation="retnet",
    ),
    # o = exp(iθ), fixed unit modulus, output Re; e, s = ReLU projections.
    "cosformer": _method(
        "Qin et al., cosFormer: Rethinking Softmax in Attention (ICLR 2022)",
        "2202.08791",
        activation="relu",
        oscillation="cosformer",
    ),
    # o = exp(iΘ), Θ in R^K learned, output Re.
    "lrpe": _method(
        "Qin et al., Linearized Relative Positional Encoding (TMLR 2023)",
        "2307.09270",
        oscillation="lrpe",
    ),
    # o = α_t 1ᵀ, α_t = sigmoid(W x)^(1/16): the paper grid's o_type 3 with τ = 16.
    "gla": _method(
        "Yang et al., Gated Linear Attention Transformers (ICML 2024)",
        "2312.06635",
        oscillation="o3",
        tau=16.0,
    ),
    # e = 1 - f_t, o = f_t 1ᵀ with f_t lower-bounded.
    "hgrn2": _method(
        "Qin et al., HGRN2: Gated Linear RNNs with State Expansion (COLM 2024)",
        "2404.07904",
        expand="ones",
        oscillation="hgrn2",
    ),
    # e = B_t, o = exp(Δ_t ⊗ A) (full K×D), s = C_t, i = Δ_t ⊙ u_t; Δ with bias, rank 16.
    "mamba": _method(
        "Gu and Dao, Mamba: Linear-Time Sequence Modeling with Selective State Spaces (2023)",
        "2312.00752",
        options={"rank": 16, "dt_bias": True},
        oscillation="selective_ssm",
        expand_dim=16,
    ),
    # Scalar exp(Δ_t A_h) per head, i = Δ_t u_t.
    "mamba2": _method(
        "Dao and Gu, Transformers are SSMs: Mamba-2 / SSD (ICML 2024)",
        "2405.21060",
        oscillation="scalar_ssm",
    ),
    # DI diagonal exp(ΔΛ) (complex), e = B̄, s = C, i = u. DSS (2203.14343) and S5 (2208.04933)
    # are the same EOS setting with other initialisations / a shared Λ across channels.
    "s4d": _method(
        "Gu et al., On the Parameterization and Initialization of Diagonal SSMs (S4D, 2022)",
        "2206.11893",
        inputs="identity",
        expand="ones",
        shrink="none",
        oscillation="s4d",
        expand_dim=32,
    ),
    # λ = exp(-exp(ν) + iθ) (DI complex), e = γ ⊙ B, s = C, i = x.
    "lru": _method(
        "Orvieto et al., Resurrecting Recurrent Neural Networks for Long Sequences (ICML 2023)",
        "2303.06349",
        inputs="identity",
        expand="ones",
        shrink="none",
        oscillation="lru",
    ),
    # Numerator of the WKV: e = exp(k_t), o = exp(-w) per channel, s = sigmoid(r_t), i = v_t.
    "rwkv4": _method(
        "Peng et al., RWKV: Reinventing RNNs for the Transformer Era (2023)",
        "2305.13048",
        expand="exp_proj",
        shrink="sigmoid_proj",
        oscillation="rwkv4",
        num_heads=PER_CHANNEL,
        expand_dim=1,
    ),
    # EMA part: e = α, o = 1 - α ⊙ δ, s = η (all DI K×D), i = x.
    "mega_ema": _method(
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
# Monarch Mixer: not EOSMixer layers but M2Mixer (`lcsm_jax.m2`), with the same __call__ /
# init_cache / step interface; "m2" is the Hyena long conv, "m2_ssm" its recurrent EOS form.
# Their overrides are `M2Config` fields.
M2_KERNELS = {"m2": "hyena", "m2_ssm": "ssm"}
M2 = Method("Fu et al., Monarch Mixer (NeurIPS 2023)", "2310.12109", ())


def names() -> list[str]:
    """Names `build` accepts: "lcsm" (the paper grid), one per published method, and M2."""
    return ["lcsm", *METHODS, *M2_KERNELS]


def method(name: str) -> Method:
    """The catalogue entry (paper, arXiv id, stages) called `name`."""
    if name == "lcsm":
        return LCSM
    if name in M2_KERNELS:
        return M2
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid names: {', '.join(names())}")
    return METHODS[name]


def build(name: str, *, embed_dim: int, rngs: nnx.Rngs, **overrides) -> EOSMixer:
    """Builds the layer for catalogue entry `name` at width `embed_dim`.

    For "lcsm", `overrides` are `EOSConfig` fields (o_type=..., e_type=..., ...). For a method,
    they are sizes, dtypes and backend (`OVERRIDABLE`) or options of its oscillation
    (e.g. lower_bound for "hgrn2", max_len for "cosformer"). For "m2" and "m2_ssm" they are
    `M2Config` fields, and the layer is an `M2Mixer`.

    Raises:
      ValueError: unknown name (the message lists the valid ones) or an override the entry does
        not take.
    """
    entry = method(name)
    if name in M2_KERNELS:
        return M2Mixer(m2_config(embed_dim, M2_KERNELS[name], overrides), rngs=rngs)
    if name == "lcsm":
        return EOSLayer(EOSConfig(embed_dim=embed_dim, **overrides), rngs=rngs)
    fields = dict(entry.stages)
    options = dict(entry.options)
    accepted = OSCILLATIONS[fields["oscillation"]].OPTIONS
    for key, value in overrides.items():
        if key in OVERRIDABLE:
            fields[key] = value
        elif key in accepted:
            options[key] = value
        else:
            raise ValueError(
                f"{name!r} does not take {key!r}; it takes {', '.join(OVERRIDABLE)}"
                + (f" and its options {', '.join(accepted)}" if accepted else "")
            )
    spec = LayerSpec(embed_dim=embed_dim, options=tuple(sorted(options.items())), **fields)
    return EOSMixer(spec, rngs=rngs)

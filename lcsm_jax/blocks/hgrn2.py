"""The HGRN2 token mixer (Qin, Yang, Sun, Shen, Li, Sun and Zhong, "HGRN2: Gated Linear RNNs with
State Expansion", arXiv 2404.07904, §3), following the official language-model code named by
github:OpenNLPLab/HGRN2 (its README points to github:Doraemonzzz/hgru2-pytorch, branch
`reproduce`, hgru2_pytorch/models/modeling_hgrn2.py, class `Hgru2`); fla's fla/layers/hgrn2.py
(`HGRN2Attention`) is the same layer with the differences noted below:

    i, o, f = W_i x, W_o x, W_f x                   (three M-wide projections, no bias)
    i = in_act(i),  q = out_act(o)                   (official LM defaults: none, SiLU)
    λ_t = β + (1 - β) sigmoid(f_t)                   (forget gate with lower bound β)
    h_t = Diag(λ_t) h_{t-1} + (1 - λ_t) ⊗ i_t,   y_t = q_tᵀ h_t    (per head of `expand_ratio`)
    out = W_out RMSNorm(y)                           (over the whole width)

i.e. `ops.gla` with k = 1 - λ, g = log λ, v = i and scale 1. Choices:
- The output gate (the query) gets SiLU: modeling_hgrn2.py has `out_act="silu"` (l. 44, and
  configuration_hgrn2.py l. 30) applied as `Q = self.out_act(Q)` (l. 71), with `in_act="none"`
  on the input (l. 43, l. 70); fla also applies swish to q. (The 1-D module used for LRA and
  images, hgru2_pytorch/modules/hgru2_1d.py, defaults instead to SiLU on the input and sigmoid on
  the query, ll. 17-18, 58-59; `input_act` / `output_gate_act` select them.)
- Scale 1 on q, as the official kernels (`FusedRecurrentGLAFunction`: `scale = 1`); fla's
  chunk_gla default is K^-½.
- The norm is the official `SimpleRMSNorm` (no weight, eps 1e-6); `elementwise_affine=True` with
  `norm_eps=1e-5` is fla's RMSNorm.
- The lower bound β is a config float (default 0, the first layer's). In the official model it
  is per layer and channel: softmax over a [num_layers, M] parameter, cumulative sum, minus the
  first row, so it grows with depth; that scheme belongs to a model, not one block.
- The official training kernel clamps log λ at -3 in its inter-chunk part only; not followed.
- `use_short_conv` is fla's option (a causal depthwise conv on i, o, f, no activation; default
  off, absent from the official code).
Init: linears N(0, 0.02²) (`_init_weights` in both codes).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.parts import (
    CausalConv,
    HeadRMSNorm,
    check_positive,
    check_positive_ints,
    check_scan_options,
    step_convs,
)
from lcsm_jax.nn.init import dense

_ACTS = {"none": lambda x: x, "silu": jax.nn.silu, "sigmoid": jax.nn.sigmoid}


@dataclasses.dataclass(frozen=True, kw_only=True)
class HGRN2Config:
    """embed_dim M; expand_ratio E (the head width of the forget gate, the query and the input:
    M / E heads with an E x E state each); lower_bound β in [0, 1) of the forget gate;
    output_gate_act / input_act ("none", "silu" or "sigmoid"); elementwise_affine and norm_eps of
    the output RMSNorm; use_short_conv / conv_size / conv_bias; backend and chunk_size go to
    `ops.gla`."""

    embed_dim: int
    expand_ratio: int = 128
    lower_bound: float = 0.0
    output_gate_act: str = "silu"
    input_act: str = "none"
    elementwise_affine: bool = False
    norm_eps: float = 1e-6
    use_short_conv: bool = False
    conv_size: int = 4
    conv_bias: bool = False
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_positive_ints(self, ("embed_dim", "expand_ratio", "conv_size"))
        if self.embed_dim % self.expand_ratio:
            raise ValueError(
                f"HGRN2Config.expand_ratio={self.expand_ratio} must divide "
                f"embed_dim={self.embed_dim}"
            )
        lb = self.lower_bound
        if isinstance(lb, bool) or not isinstance(lb, (int, float)) or not 0 <= lb < 1:
            raise ValueError(f"HGRN2Config.lower_bound must be in [0, 1), got {lb!r}")
        for field in ("output_gate_act", "input_act"):
            if getattr(self, field) not in _ACTS:
                raise ValueError(
                    f"HGRN2Config.{field} must be one of {tuple(_ACTS)}, got "
                    f"{getattr(self, field)!r}"
                )
        check_positive(self, ("norm_eps",))
        check_scan_options(self)

    @property
    def num_heads(self) -> int:
        return self.embed_dim // self.expand_ratio


class HGRN2Block(nnx.Module):
    """The HGRN2 mixer x [B, T, M] -> [B, T, M]; `step` decodes one token with the state
    [B, H, E, E] (and the conv windows with `use_short_conv`) in the cache."""

    def __init__(self, config: HGRN2Config, *, rngs: nnx.Rngs):
        if not isinstance(config, HGRN2Config):
            raise TypeError(f"config must be a HGRN2Config, got {type(config).__name__}")
        self.config = config
        M = config.embed_dim
        self.q_proj = dense(M, M, rngs)
        self.f_proj = dense(M, M, rngs)
        self.i_proj = dense(M, M, rngs)
        self.convs = (
            nnx.List(
                CausalConv(M, config.conv_size, bias=config.conv_bias, silu=False, rngs=rngs)
                for _ in range(3)
            )
            if config.use_short_conv
            else None
        )
        self.g_norm = HeadRMSNorm(M, eps=config.norm_eps, affine=config.elementwise_affine)
        self.o_proj = dense(M, M, rngs)

    def _projections(self, x):
        return [proj(x) for proj in (self.q_proj, self.f_proj, self.i_proj)]

    def _mix(self, q, f, i, segment_ids, initial_state):
        cfg, H, E = self.config, self.config.num_heads, self.config.expand_ratio
        B, T, M = q.shape
        heads = lambda a: a.reshape(B, T, H, E)  # noqa: E731
        q = _ACTS[cfg.output_gate_act](q)
        i = _ACTS[cfg.input_act](i)
        f = f.astype(jnp.float32)
        # log λ and 1 - λ = (1 - β) sigmoid(-f) without forming 1 - exp(log λ), which would
        # round to 0 for λ near 1 in float32.
        beta = cfg.lower_bound
        g = jax.nn.log_sigmoid(f)
        if beta > 0:
            g = jnp.logaddexp(math.log(beta), math.log1p(-beta) + g)
        k = ((1.0 - beta) * jax.nn.sigmoid(-f)).astype(i.dtype)
        o_BxTxHxE, state = ops.gla(
            heads(q),
            heads(k),
            heads(i),
            heads(g),
            scale=1.0,
            initial_state=initial_state,
            output_final_state=True,
            segment_ids=segment_ids,
            backend=cfg.backend,
            chunk_size=cfg.chunk_size,
        )
        return self.o_proj(self.g_norm(o_BxTxHxE.reshape(B, T, M))), state

    def __call__(self, x_BxTxM, *, segment_ids=None):
        qfi = self._projections(x_BxTxM)
        if self.convs is not None:
            qfi = [conv(a, segment_ids) for conv, a in zip(self.convs, qfi, strict=True)]
        return self._mix(*qfi, segment_ids, None)[0]

    def init_cache(self, batch_size: int):
        cfg = self.config
        E = cfg.expand_ratio
        cache = {"state": jnp.zeros((batch_size, cfg.num_heads, E, E), jnp.float32)}
        if self.convs is not None:
            cache["conv"] = tuple(conv.init_cache(batch_size) for conv in self.convs)
        return cache

    def step(self, x_BxM, cache):
        qfi = self._projections(x_BxM)
        new_cache = {}
        if self.convs is not None:
            qfi, new_cache["conv"] = step_convs(self.convs, qfi, cache["conv"])
        y, new_cache["state"] = self._mix(*(a[:, None] for a in qfi), None, cache["state"])
        return y[:, 0], new_cache

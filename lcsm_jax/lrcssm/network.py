"""The LrcSSM classifier: encoder MLP, LRC blocks, per-step classifier with time-averaged logits.

Block: h ← LN(h); x = LRC(h) (states [B, T, D], real part for complex cells); h ← h + MLP(x);
h ← LN(h), with parameter-free LayerNorms (SPEC §6). The classifier MLP is applied at every step
and its logits are averaged over the real (unmasked) steps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.lrcssm import cell, solver

MODES = ("newton", "sequential", "input")
LAYERNORM_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class LrcSSMConfig:
    """mode: "newton" (parallel quasi-DEER solve), "sequential" (the `lax.scan` rollout, same
    function) or "input" (the input-only cell, one exact scan). complex_state: the complex
    variant (newton / sequential only)."""

    num_inputs: int
    num_classes: int
    hidden: int = 64
    state: int = 64
    num_blocks: int = 2
    mode: str = "newton"
    complex_state: bool = False
    solver: solver.SolverConfig = solver.SolverConfig()

    def __post_init__(self):
        for name in ("num_inputs", "num_classes", "hidden", "state", "num_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"LrcSSMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ValueError(f"LrcSSMConfig.num_classes must be >= 2, got {self.num_classes}")
        if self.mode not in MODES:
            raise ValueError(f"LrcSSMConfig.mode={self.mode!r}; valid: {', '.join(MODES)}")
        if self.complex_state and self.mode == "input":
            raise ValueError(
                "the input-only cell is real: complex_state needs mode newton/sequential"
            )


def layer_norm(x, eps: float = LAYERNORM_EPS):
    """Parameter-free LayerNorm over the last axis."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


class MLP(nnx.Module):
    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, x):
        for index, layer in enumerate(self.layers):
            x = layer(x) if index == 0 else layer(jax.nn.gelu(x))
        return x


class LrcLayer(nnx.Module):
    """One LRC cell over a sequence. Complex parameters are stored as [2, D] (real, imaginary)
    pairs so that the optimizer only ever sees real arrays."""

    def __init__(self, num_inputs: int, config: LrcSSMConfig, *, rngs: nnx.Rngs):
        self.mode, self.solver = config.mode, config.solver
        key = rngs.params()
        if config.mode == "input":
            params = cell.init_input_params(key, num_inputs, config.state)
        else:
            params = cell.init_params(
                key, num_inputs, config.state, complex_state=config.complex_state
            )
        self.kind = type(params)
        self.weights = nnx.Dict(
            {
                name: nnx.Param(jnp.stack([v.real, v.imag]) if jnp.iscomplexobj(v) else v)
                for name, v in params._asdict().items()
            }
        )
        self.complex_fields = tuple(
            name for name, v in params._asdict().items() if jnp.iscomplexobj(v)
        )

    def params(self):
        values = {name: p[...] for name, p in self.weights.items()}
        for name in self.complex_fields:
            values[name] = jax.lax.complex(values[name][0], values[name][1])
        return self.kind(**values)

    def __call__(self, u_BxTxN):
        """States [B, T, D] (real part for the complex cell) and the Newton iteration count."""
        params = self.params()
        iterations = jnp.zeros((), jnp.int32)
        if self.mode == "input":
            x = solver.solve_input_only(params, u_BxTxN, backend=self.solver.backend)
        elif self.mode == "sequential":
            x = cell.rollout(params, u_BxTxN)
        else:
            x, info = solver.solve(params, u_BxTxN, config=self.solver)
            iterations = info.iterations
        return jnp.real(x), iterations


class Block(nnx.Module):
    def __init__(self, config: LrcSSMConfig, *, rngs: nnx.Rngs):
        self.lrc = LrcLayer(config.hidden, config, rngs=rngs)
        self.mlp = MLP((config.state, config.hidden, config.hidden), rngs=rngs)

    def __call__(self, h_BxTxM):
        x_BxTxD, iterations = self.lrc(layer_norm(h_BxTxM))
        return layer_norm(h_BxTxM + self.mlp(x_BxTxD)), iterations


class LrcSSM(nnx.Module):
    """u [B, T, C] (+ mask [B, T]) -> class logits [B, num_classes] and the most Newton
    iterations any layer used (0 for the sequential and input-only modes)."""

    def __init__(self, config: LrcSSMConfig, *, rngs: nnx.Rngs):
        self.config = config
        H = config.hidden
        self.encoder = MLP((config.num_inputs, H, H), rngs=rngs)
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.num_blocks)])
        self.classifier = MLP((H, H, config.num_classes), rngs=rngs)

    def __call__(self, u_BxTxC, mask_BxT=None):
        if u_BxTxC.ndim != 3 or u_BxTxC.shape[-1] != self.config.num_inputs:
            raise ValueError(
                f"inputs must be [B, T, C={self.config.num_inputs}], got {u_BxTxC.shape}"
            )
        h = self.encoder(u_BxTxC.astype(jnp.float32))
        iterations = jnp.zeros((), jnp.int32)
        for block in self.blocks:
            h, used = block(h)
            iterations = jnp.maximum(iterations, used)
        logits_BxTxK = self.classifier(h)
        if mask_BxT is None:
            return jnp.mean(logits_BxTxK, axis=1), iterations
        if mask_BxT.shape != u_BxTxC.shape[:2]:
            raise ValueError(f"mask must be [B, T]={u_BxTxC.shape[:2]}, got {mask_BxT.shape}")
        weights_BxTx1 = mask_BxT.astype(jnp.float32)[..., None]
        total = jnp.sum(logits_BxTxK * weights_BxTx1, axis=1)
        return total / jnp.maximum(jnp.sum(weights_BxTx1, axis=1), 1.0), iterations

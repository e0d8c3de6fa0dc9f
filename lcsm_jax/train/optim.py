"""AdamW with linear warmup and cosine decay, global-norm clipping and a weight-decay mask."""

from __future__ import annotations

import dataclasses

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 0
    total_steps: int | None = None  # None: set by the run from the data (see Experiment)
    b1: float = 0.9
    b2: float = 0.98
    clip_norm: float = 1.0
    final_lr_ratio: float = 0.0

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.total_steps is None:
            return
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"optim needs 0 <= warmup_steps ({self.warmup_steps}) <= total_steps "
                f"({self.total_steps}) and total_steps >= 1"
            )


def schedule(config: OptimConfig) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if config.warmup_steps else config.lr,
        peak_value=config.lr,
        warmup_steps=config.warmup_steps,
        decay_steps=config.total_steps,
        end_value=config.lr * config.final_lr_ratio,
    )


def decay_mask(params):
    """Weight decay on matrices (ndim >= 2) only: no decay on biases, norm scales, 1-D decays."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make(config: OptimConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(
            schedule(config),
            b1=config.b1,
            b2=config.b2,
            weight_decay=config.weight_decay,
            mask=decay_mask,
        ),
    )

"""A sequence classifier around any catalogue mixer: LrcSSM's network (SPEC §6), so LrcSSM, LRU,
S4D, Mamba, GLA, ... are compared on one harness.

u [B, T, C] -> encoder MLP -> blocks -> classifier MLP at every step -> logits averaged over the
real (unmasked) steps. Block: x = mixer(LN(h)); h ← LN(h + MLP(x)), with parameter-free
LayerNorms. With `mixer="lrcssm"` this is the LrcSSM paper's classifier.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.nn.norm import layer_norm


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """hidden: the width M every block works at; mixer: a `catalogue.names()` entry built at
    width `hidden` with `mixer_options` (name, value) pairs."""

    hidden: int = 64
    num_blocks: int = 2
    mixer: str = "lrcssm"
    mixer_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        for name in ("hidden", "num_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ClassifierConfig.{name} must be an int >= 1, got {value!r}")
        catalogue.check(self.mixer, embed_dim=self.hidden, **dict(self.mixer_options))


class MLP(nnx.Module):
    """Linear layers with GELU between them."""

    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, x):
        for index, layer in enumerate(self.layers):
            x = layer(x) if index == 0 else layer(jax.nn.gelu(x))
        return x


class Block(nnx.Module):
    def __init__(self, config: ClassifierConfig, *, rngs: nnx.Rngs):
        H = config.hidden
        self.mixer = catalogue.build(
            config.mixer, embed_dim=H, rngs=rngs, **dict(config.mixer_options)
        )
        self.mlp = MLP((H, H, H), rngs=rngs)

    def __call__(self, h_BxTxM):
        return layer_norm(h_BxTxM + self.mlp(self.mixer(layer_norm(h_BxTxM))))


class SequenceClassifier(nnx.Module):
    """u [B, T, C] (+ mask [B, T]) -> (class logits [B, num_classes], stats). `stats` holds the
    largest value each block sowed as `nnx.Intermediate` (e.g. LrcSSM's "newton_iterations")."""

    def __init__(
        self, config: ClassifierConfig, *, num_inputs: int, num_classes: int, rngs: nnx.Rngs
    ):
        if num_inputs < 1 or num_classes < 2:
            raise ValueError(
                f"a classifier needs num_inputs >= 1 and num_classes >= 2, got {num_inputs} "
                f"and {num_classes}"
            )
        self.config, self.num_inputs = config, num_inputs
        H = config.hidden
        self.encoder = MLP((num_inputs, H, H), rngs=rngs)
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.num_blocks)])
        self.classifier = MLP((H, H, num_classes), rngs=rngs)

    def __call__(self, u_BxTxC, mask_BxT=None):
        if u_BxTxC.ndim != 3 or u_BxTxC.shape[-1] != self.num_inputs:
            raise ValueError(f"inputs must be [B, T, C={self.num_inputs}], got {u_BxTxC.shape}")
        if mask_BxT is not None and mask_BxT.shape != u_BxTxC.shape[:2]:
            raise ValueError(f"mask must be [B, T]={u_BxTxC.shape[:2]}, got {mask_BxT.shape}")
        h, sown = nnx.capture(self._blocks, nnx.Intermediate)(
            self.encoder(u_BxTxC.astype(jnp.float32))
        )
        stats = _peaks(sown)
        logits_BxTxK = self.classifier(h)
        if mask_BxT is None:
            return jnp.mean(logits_BxTxK, axis=1), stats
        weights_BxTx1 = mask_BxT.astype(jnp.float32)[..., None]
        total = jnp.sum(logits_BxTxK * weights_BxTx1, axis=1)
        return total / jnp.maximum(jnp.sum(weights_BxTx1, axis=1), 1.0), stats

    def _blocks(self, h_BxTxM):
        for block in self.blocks:
            h_BxTxM = block(h_BxTxM)
        return h_BxTxM


def _peaks(intermediates) -> dict:
    """{name: the largest value sown under that name anywhere in the model}."""
    peaks = {}
    for path, value in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(intermediates)):
        name = next(k.key for k in reversed(path) if isinstance(getattr(k, "key", None), str))
        peaks[name] = value if name not in peaks else jnp.maximum(peaks[name], value)
    return peaks

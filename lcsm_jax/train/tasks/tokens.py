"""What the token tasks (MQAR, language modelling) share: the language model and the masked
token cross-entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.data.batching import IGNORE
from lcsm_jax.models.lm import LanguageModel
from lcsm_jax.train.task import DataTask


def cross_entropy(logits_BxTxV, labels_BxT):
    """Mean token cross-entropy over labelled positions (labels != -100), plus the batch sums."""
    mask = labels_BxT != IGNORE
    logp = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, jnp.where(mask, labels_BxT, 0)[..., None], -1)[..., 0]
    correct = (jnp.argmax(logits_BxTxV, -1) == labels_BxT) & mask
    count = jnp.sum(mask)
    sums = {"nll": jnp.sum(nll * mask), "correct": jnp.sum(correct), "count": count}
    return sums["nll"] / jnp.maximum(count, 1), sums


class TokenTask(DataTask):
    """Base of the token tasks: `LanguageModel` over `experiment.model`, token cross-entropy."""

    def make_model(self, rngs: nnx.Rngs) -> LanguageModel:
        return LanguageModel(self.experiment.model, rngs=rngs)

    def loss(self, model, batch, dropout_key):
        _, sums = cross_entropy(model(batch["inputs"], dropout_key=dropout_key), batch["labels"])
        return sums, {}

    @property
    def tokens_per_batch(self) -> int:
        return self.experiment.train.batch_size * self.experiment.data.seq_len

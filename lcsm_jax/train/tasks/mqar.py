"""MQAR: per-example recall accuracy, averaged over examples, on each (seq_len, num_kv) slice."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lcsm_jax.data.batching import IGNORE, padded_batches
from lcsm_jax.data.mqar_task import MQARData
from lcsm_jax.train import sharding
from lcsm_jax.train.task import eval_batch_size
from lcsm_jax.train.tasks.tokens import TokenTask


def slice_name(seq_len: int, num_kv: int) -> str:
    return f"seq{seq_len}_kv{num_kv}"


def example_accuracy(logits_BxTxV, labels_BxT):
    """[B] per-example accuracy (mean over its labelled positions) and [B] has-labels flags."""
    mask = labels_BxT != IGNORE
    correct = (jnp.argmax(logits_BxTxV, -1) == labels_BxT) & mask
    count = jnp.sum(mask, axis=1)
    return jnp.sum(correct, axis=1) / jnp.maximum(count, 1), count > 0


class MQARRecallTask(TokenTask):
    maximize = True

    def __init__(self, experiment):
        super().__init__(experiment)
        self.data = MQARData(experiment.data, experiment.train.batch_size)

    @property
    def main_metric(self) -> str:
        return slice_name(self.experiment.data.seq_len, self.experiment.data.num_kv)

    def make_evaluator(self, params, mesh, params_shardings, batch_size: int):
        return MQAREvaluator(params, mesh, params_shardings, self.data.test, batch_size)


class MQAREvaluator:
    def __init__(self, params, mesh, params_shardings, test_sets: dict, batch_size: int):
        self.batch_size = eval_batch_size(batch_size, mesh)
        self.mesh, self.test_sets = mesh, test_sets
        self.metric_names = tuple(slice_name(*key) for key in test_sets)

        def eval_step(p, batch):
            return example_accuracy(params.model(p)(batch["inputs"]), batch["labels"])

        self._step = sharding.jit_batch_step(
            eval_step, mesh, params_shardings, sharding.replicated(mesh)
        )

    def accuracy(self, p, inputs: np.ndarray, labels: np.ndarray) -> float:
        total, count = 0.0, 0
        arrays = {"inputs": inputs.astype(np.int32), "labels": labels.astype(np.int32)}
        for batch, _ in padded_batches(arrays, self.batch_size, {"labels": IGNORE}):
            acc, has = (np.asarray(a) for a in self._step(p, sharding.put_batch(batch, self.mesh)))
            total += float(np.sum(acc[has]))
            count += int(np.sum(has))
        return total / max(count, 1)

    def __call__(self, p) -> dict[str, float]:
        """{"seq64_kv4": accuracy, ...}; the first slice is the training one."""
        return {slice_name(*key): self.accuracy(p, *data) for key, data in self.test_sets.items()}

    report = __call__

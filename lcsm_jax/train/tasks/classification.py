"""Time-series classification (UEA/UCR): any catalogue mixer inside `SequenceClassifier`, one
label per series, masked (variable-length) series, accuracy over a whole split."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.data.batching import padded_batches
from lcsm_jax.data.uea_task import UEAData, arrays
from lcsm_jax.models.classifier import SequenceClassifier
from lcsm_jax.train import sharding
from lcsm_jax.train.task import DataTask, eval_batch_size


def _sums(model, batch):
    logits, stats = model(batch["x"], batch["mask"])
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, batch["labels"][:, None], axis=1)[:, 0]
    weight = batch["weight"]  # 0 for the rows that pad an evaluation batch
    correct = (jnp.argmax(logits, -1) == batch["labels"]) * weight
    sums = {"nll": jnp.sum(nll * weight), "correct": jnp.sum(correct), "count": jnp.sum(weight)}
    return sums, stats


class ClassificationTask(DataTask):
    maximize = True

    def __init__(self, experiment):
        super().__init__(experiment)
        self.data = UEAData(experiment.data, experiment.train.batch_size)
        self.main_metric = experiment.data.name

    @property
    def tokens_per_batch(self) -> int:
        return self.experiment.train.batch_size * self.data.seq_len

    def make_model(self, rngs):
        dataset = self.data.dataset
        return SequenceClassifier(
            self.experiment.model,
            num_inputs=dataset.num_channels,
            num_classes=dataset.num_classes,
            rngs=rngs,
        )

    def loss(self, model, batch, dropout_key):
        del dropout_key
        return _sums(model, batch)

    def make_evaluator(self, params, mesh, params_shardings, batch_size: int):
        return ClassificationEvaluator(params, mesh, params_shardings, self.data, batch_size)


class ClassificationEvaluator:
    """{dataset name: test accuracy} and the largest sown statistic (e.g. Newton iterations)."""

    def __init__(self, params, mesh, params_shardings, data: UEAData, batch_size: int):
        self.batch_size = eval_batch_size(batch_size, mesh)
        self.mesh, self.data = mesh, data
        self.name = data.dataset.name
        shapes = jax.eval_shape(
            lambda p, b: _sums(params.model(p), b)[1],
            params.abstract,
            {
                k: jax.ShapeDtypeStruct((1, *v.shape[1:]), v.dtype)
                for k, v in self._arrays("test").items()
            },
        )
        self.metric_names = (self.name, *shapes)
        self._step = sharding.jit_batch_step(
            lambda p, batch: _sums(params.model(p), batch),
            mesh,
            params_shardings,
            sharding.replicated(mesh),
        )

    def _arrays(self, split: str):
        return arrays(getattr(self.data.dataset, split))

    def evaluate(self, p, split: str) -> tuple[float, dict]:
        correct, peaks = 0.0, {}
        for batch, _ in padded_batches(self._arrays(split), self.batch_size, {"weight": 0.0}):
            sums, stats = jax.device_get(self._step(p, sharding.put_batch(batch, self.mesh)))
            correct += float(sums["correct"])
            peaks = {k: max(float(v), peaks.get(k, float(v))) for k, v in stats.items()}
        return correct / len(getattr(self.data.dataset, split)), peaks

    def __call__(self, p) -> dict[str, float]:
        accuracy, peaks = self.evaluate(p, "test")
        return {self.name: accuracy, **peaks}

    def report(self, p) -> dict[str, float]:
        train_accuracy, train_peaks = self.evaluate(p, "train")
        test = self(p)
        peaks = {k: max(v, test.get(k, v)) for k, v in train_peaks.items()}
        return {**test, **peaks, "train_accuracy": train_accuracy}

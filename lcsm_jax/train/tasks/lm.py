"""Language modelling: the grain-fed text task, and its evaluation (loss, perplexity and bits per
byte on whole splits).

Sums (not means) are accumulated over batches so that padded windows and partial batches weigh
nothing. Bits per byte = total nll / ln 2 / total UTF-8 bytes of the predicted tokens, which
compares models across tokenizers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax.data.batching import IGNORE, padded_batches
from lcsm_jax.data.text.task import LMData
from lcsm_jax.train import sharding
from lcsm_jax.train.task import eval_batch_size
from lcsm_jax.train.tasks.tokens import TokenTask, cross_entropy

METRICS = ("loss", "perplexity", "bits_per_byte")


class LMTextTask(TokenTask):
    main_metric, maximize = "validation_loss", False

    def __init__(self, experiment):
        super().__init__(experiment)
        self.data = LMData(experiment.data, experiment.train.batch_size)

    def data_state(self):
        return self.data.get_state()  # the grain iterator: saved to resume exactly

    def restore_data_state(self, state) -> None:
        self.data.set_state(state)

    def make_evaluator(self, params, mesh, params_shardings, batch_size: int):
        return LMEvaluator(params, mesh, params_shardings, self.data, batch_size)


def split_metrics(nll: float, count: int, num_bytes: int, prefix: str) -> dict[str, float]:
    loss = nll / max(count, 1)
    return {
        f"{prefix}_loss": loss,
        f"{prefix}_perplexity": math.exp(min(loss, 700.0)),  # exp overflows past ~709
        f"{prefix}_bits_per_byte": nll / math.log(2) / max(num_bytes, 1),
    }


class LMEvaluator:
    metric_names = tuple(f"validation_{name}" for name in METRICS)

    def __init__(self, params, mesh, params_shardings, data, batch_size: int):
        self.batch_size = eval_batch_size(batch_size, mesh)
        self.mesh, self.data = mesh, data
        self._windows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        token_bytes = jnp.asarray(data.token_bytes)

        def eval_step(p, batch):
            logits = params.model(p)(batch["inputs"])
            _, sums = cross_entropy(logits, batch["labels"])
            mask = batch["labels"] != IGNORE
            labels = jnp.where(mask, batch["labels"], 0)
            sums["bytes"] = jnp.sum(jnp.where(mask, token_bytes[labels], 0))
            return sums

        self._step = sharding.jit_batch_step(
            eval_step, mesh, params_shardings, sharding.replicated(mesh)
        )

    def windows(self, split: str):
        if split not in self._windows:
            self._windows[split] = self.data.eval_windows(split)
        return self._windows[split]

    def sums(self, p, split: str) -> tuple[float, int, int]:
        inputs, labels = self.windows(split)
        nll, count, num_bytes = 0.0, 0, 0
        arrays = {"inputs": inputs, "labels": labels}
        for batch, _ in padded_batches(arrays, self.batch_size, {"labels": IGNORE}):
            out = jax.device_get(self._step(p, sharding.put_batch(batch, self.mesh)))
            nll += float(out["nll"])
            count += int(out["count"])
            num_bytes += int(out["bytes"])
        return nll, count, num_bytes

    def __call__(self, p, splits=("validation",)) -> dict[str, float]:
        """{"<split>_loss", "<split>_perplexity", "<split>_bits_per_byte"} per split."""
        metrics = {}
        for split in splits:
            metrics.update(split_metrics(*self.sums(p, split), prefix=split))
        return metrics

    def report(self, p) -> dict[str, float]:
        return self(p, ("validation", "test"))

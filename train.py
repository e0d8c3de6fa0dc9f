"""Train a model: `python train.py --config configs/mqar.py[:key=value,...] --workdir DIR`.

Any task (configs/mqar.py, configs/lm.py, configs/uea.py) runs through the one loop
(`lcsm_jax/train/loop.py`). Resumes from the latest checkpoint in DIR; prints the summary and
the final evaluation metrics (MQAR: accuracy per slice; LM: validation loss, perplexity, bits
per byte; UEA: test accuracy).
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

from lcsm_jax.train import experiment, loop
from lcsm_jax.train.checkpoint import CheckpointError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics, summary")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
    try:
        summary = loop.train(experiment.translate(_CONFIG.value), _WORKDIR.value)
    except (CheckpointError, loop.NonFiniteLossError, ImportError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    print(json.dumps(summary, indent=2))
    for name, value in summary["test"].items():
        print(f"{name}: {value:.4f}")


if __name__ == "__main__":
    app.run(main)

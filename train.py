"""Train a model: `python train.py --config configs/mqar.py[:key=value,...] --workdir DIR`.

Resumes from the latest checkpoint in DIR; prints the final test accuracy per slice.
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

from lcsm_jax.lrcssm import trainer as classification
from lcsm_jax.train import loop
from lcsm_jax.train.checkpoint import CheckpointError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics, summary")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
    # Time-series classification (configs/uea.py) has its own loop: lcsm_jax/lrcssm/trainer.py.
    run = classification.train if _CONFIG.value.task == "uea" else loop.train
    try:
        summary = run(_CONFIG.value, _WORKDIR.value)
    except (
        CheckpointError,
        loop.NonFiniteLossError,
        classification.NonFiniteLossError,
        ImportError,
        ValueError,
    ) as err:
        raise SystemExit(f"error: {err}") from err
    print(json.dumps(summary, indent=2))
    label = "" if _CONFIG.value.task == "lm" else "test accuracy "  # LM: validation loss, bpb
    for name, acc in summary["test"].items():
        print(f"{label}{name}: {acc:.4f}")


if __name__ == "__main__":
    app.run(main)

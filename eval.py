"""Evaluate a checkpoint: `python eval.py --config configs/x.py[:...] --workdir DIR [--step N]`.

Restores the latest (or the given) checkpoint of DIR, runs the task's full evaluation and writes
it as JSON ({"step", "task", "metrics"}): MQAR accuracy per (seq_len, num_kv) slice (the training
slice and `data.test_slices`); LM validation and test loss, perplexity and bits per byte; UEA
test and train accuracy.
"""

import json
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from lcsm_jax.train import experiment
from lcsm_jax.train.checkpoint import CheckpointError
from lcsm_jax.train.loop import Run

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory holding checkpoints/")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_OUTPUT = flags.DEFINE_string("output", None, "JSON output path (default: DIR/eval_<step>.json)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        run = Run(experiment.translate(_CONFIG.value), _WORKDIR.value, create=False)
        state, _ = run.restore(_STEP.value, same_config=False)
    except (CheckpointError, ImportError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    step = int(state["step"])
    result = {
        "step": step,
        "task": run.experiment.task,
        "metrics": run.evaluator.report(state["params"]),
    }
    run.checkpoints.close()
    output = Path(_OUTPUT.value or Path(_WORKDIR.value) / f"eval_{step}.json")
    output.write_text(json.dumps(result, indent=2))
    for name, value in result["metrics"].items():
        print(f"step {step} {name}: {value:.4f}")
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)

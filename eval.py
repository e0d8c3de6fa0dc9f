"""Evaluate a checkpoint: `python eval.py --config configs/mqar.py[:...] --workdir DIR [--step N]`.

Restores the latest (or the given) checkpoint of DIR, reports MQAR accuracy per (seq_len, num_kv)
slice (the training slice and `data.test_slices`) and writes them as JSON. For a language model
(configs/lm.py) it reports validation and test loss, perplexity and bits per byte.
"""

import json
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

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
        run = Run(_CONFIG.value, _WORKDIR.value, create=False)
        state, _ = run.restore(_STEP.value, same_config=False)
    except (CheckpointError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    step = int(state["step"])
    if run.config.task == "lm":  # loss, perplexity and bits per byte on validation and test
        result = {"step": step, "lm": run.evaluator(state["params"], ("validation", "test"))}
    else:
        result = {"step": step, "accuracy": run.evaluator(state["params"])}
    run.checkpoints.close()
    output = Path(_OUTPUT.value or Path(_WORKDIR.value) / f"eval_{step}.json")
    output.write_text(json.dumps(result, indent=2))
    for name, acc in result.get("accuracy", {}).items():
        print(f"step {step} accuracy {name}: {acc:.4f}")
    for name, value in result.get("lm", {}).items():
        print(f"step {step} {name}: {value:.4f}")
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)

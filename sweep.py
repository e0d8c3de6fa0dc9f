"""MQAR sweep: `python sweep.py --config configs/mqar.py --sweepdir runs/sweep --models gla,lcsm
--d_models 64,128 --slices 64:4,128:8 --lrs 1e-3,3e-3,1e-2`.

Resumable: rerun the same command to continue. Writes results.md (best-lr accuracy table),
results.png and results.json into the sweep directory.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from lcsm_jax.train import sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "base experiment config (configs/*.py)")
_DIR = flags.DEFINE_string("sweepdir", None, "directory holding one run per cell")
_MODELS = flags.DEFINE_list("models", ["gla"], "mixers (catalogue names or attention)")
_D_MODELS = flags.DEFINE_list("d_models", ["64"], "model widths")
_SLICES = flags.DEFINE_list("slices", ["64:4"], "seq_len:num_kv pairs")
_LRS = flags.DEFINE_list("lrs", ["1e-3", "3e-3", "1e-2"], "learning rates")
flags.mark_flags_as_required(["config", "sweepdir"])


def _slice(text: str) -> tuple[int, int]:
    try:
        seq_len, num_kv = text.split(":")
        return int(seq_len), int(num_kv)
    except ValueError as err:
        raise SystemExit(f"error: slice {text!r} is not seq_len:num_kv") from err


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    results = sweep.run(
        _CONFIG.value,
        _DIR.value,
        models=_MODELS.value,
        d_models=[int(d) for d in _D_MODELS.value],
        slices=[_slice(s) for s in _SLICES.value],
        lrs=[float(lr) for lr in _LRS.value],
    )
    table, figure = sweep.report(results, _DIR.value)
    print(table.read_text())
    print(f"wrote {table} and {figure}")


if __name__ == "__main__":
    app.run(main)

"""Sweep any task: `python sweep.py --config configs/mqar.py --sweepdir runs/sweep
--models gla_core,lcsm --d_models 64,128 --slices 64:4,128:8 --lrs 1e-3,3e-3,1e-2`.

`--slices` (seq_len:num_kv pairs) are MQAR's; leave them out for another task, e.g.
`python sweep.py --config configs/uea.py --sweepdir runs/uea_sweep --models lrcssm,lru,gla
--d_models 64 --lrs 1e-4,1e-3`. Resumable: rerun the same command to continue. Writes
results.md (best-lr table of the task's main metric), results.png and results.json into the
sweep directory.
"""

import importlib.util

from absl import app, flags, logging
from ml_collections import config_flags

from lcsm_jax.train import sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "base experiment config (configs/*.py)")
_DIR = flags.DEFINE_string("sweepdir", None, "directory holding one run per cell")
_MODELS = flags.DEFINE_list("models", ["gla_core"], "mixers (catalogue names)")
_D_MODELS = flags.DEFINE_list("d_models", ["64"], "model widths")
_SLICES = flags.DEFINE_list("slices", [], "MQAR seq_len:num_kv pairs (default: the config's)")
_LRS = flags.DEFINE_list("lrs", ["1e-3", "3e-3", "1e-2"], "learning rates")
flags.mark_flags_as_required(["config", "sweepdir"])


def _slice(text: str) -> tuple[int, int]:
    try:
        seq_len, num_kv = text.split(":")
        return int(seq_len), int(num_kv)
    except ValueError as err:
        raise SystemExit(f"error: slice {text!r} is not seq_len:num_kv") from err


def _aliases() -> dict[str, str]:
    """The override names (ALIASES) of the config file the --config flag names."""
    # The flag's value is `path[:overrides]`; the file is the part before the first ':'.
    path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":", 1)[0]
    spec = importlib.util.spec_from_file_location("sweep_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "ALIASES", {})


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    try:
        results = sweep.run(
            _CONFIG.value,
            _aliases(),
            _DIR.value,
            models=_MODELS.value,
            d_models=[int(d) for d in _D_MODELS.value],
            slices=[_slice(s) for s in _SLICES.value],
            lrs=[float(lr) for lr in _LRS.value],
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    table, figure = sweep.report(results, _DIR.value)
    print(table.read_text())
    print(f"wrote {table} and {figure}")


if __name__ == "__main__":
    app.run(main)

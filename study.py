"""Run one of the papers' studies over the one training loop, resumably:

    python study.py --study oscillation --task mqar --budget cpu --out docs/studies/mqar
    python study.py --study data_dependence --task lm --budget cpu --out docs/studies/lm
    python study.py --study tau --task mqar --budget smoke --out /tmp/smoke   # every cell, minutes

Studies are configs/studies/<NAME>.py (parameterisation, data_dependence, oscillation,
activation, tau), budgets configs/studies/budgets.py (smoke, cpu, paper per task). Writes
DIR/NAME.md (one row per cell, per slice the best-over-lr value, the lr, the seeds' spread) and
DIR/NAME.png, with one run directory per (cell, slice, lr, seed) under DIR/NAME/. Rerunning
the same command trains only what is missing (a killed run resumes from its checkpoint); two
processes on one study share the work. `--report` only rewrites the table and the plot.
"""

import ast
import dataclasses
import importlib.util
import shlex
from pathlib import Path

from absl import app, flags, logging

from lcsm_jax.train import study, study_report

CONFIGS = Path(__file__).resolve().parent / "configs"
TASKS = ("mqar", "lm", "uea")

_STUDY = flags.DEFINE_string("study", None, "a study of configs/studies/ (or a path to one)")
_TASK = flags.DEFINE_enum("task", "mqar", TASKS, "the task the cells train on")
_BUDGET = flags.DEFINE_string("budget", "cpu", "smoke, cpu or paper (configs/studies/budgets.py)")
_OUT = flags.DEFINE_string("out", None, "directory for NAME.md, NAME.png and the runs")
_SET = flags.DEFINE_string("set", "", "extra overrides for every run, key=value,...")
_SEEDS = flags.DEFINE_list(
    "seeds", None, "train only these seeds (default: the budget's), e.g. 0 for every study first"
)
_REPORT = flags.DEFINE_bool("report", False, "only write the table and plot from finished runs")
flags.mark_flags_as_required(["study", "out"])


def _load(path: Path, what: str):
    if not path.exists():
        raise SystemExit(f"error: no {what} {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study() -> study.Study:
    given = Path(_STUDY.value)
    path = given if given.suffix == ".py" else CONFIGS / "studies" / f"{_STUDY.value}.py"
    if not path.exists():
        known = sorted(p.stem for p in (CONFIGS / "studies").glob("*.py") if p.stem != "budgets")
        raise SystemExit(f"error: unknown study {_STUDY.value!r}; known: {', '.join(known)}")
    return _load(path, "study").STUDY


def _budget() -> study.Budget:
    budgets = _load(CONFIGS / "studies" / "budgets.py", "budgets").BUDGETS[_TASK.value]
    if _BUDGET.value not in budgets:
        raise SystemExit(f"error: unknown budget {_BUDGET.value!r}; known: {', '.join(budgets)}")
    budget = budgets[_BUDGET.value]
    if _SET.value:
        extra = {}
        for item in _SET.value.split(","):
            if "=" not in item:
                raise SystemExit(f"error: --set item {item!r} is not key=value")
            key, raw = (part.strip() for part in item.split("=", 1))
            try:
                extra[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                extra[key] = raw  # a bare string such as corpus=wikitext-103
        budget = dataclasses.replace(budget, overrides={**budget.overrides, **extra})
    if _SEEDS.value:
        try:
            seeds = tuple(int(s) for s in _SEEDS.value)
        except ValueError:
            given = ",".join(_SEEDS.value)
            raise SystemExit(f"error: --seeds {given!r} are not integers") from None
        budget = dataclasses.replace(budget, seeds=seeds)
    return budget


def _base(budget: study.Budget):
    name, _, arg = budget.config.partition(":")
    module = _load(CONFIGS / name, "config")
    return module.get_config(arg or None), getattr(module, "ALIASES", {})


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    definition, budget = _study(), _budget()
    base, aliases = _base(budget)
    command = (
        f"python study.py --study {_STUDY.value} --task {_TASK.value} --budget {budget.name} "
        f"--out {_OUT.value}" + (f" --set {shlex.quote(_SET.value)}" if _SET.value else "")
    )
    try:
        if _REPORT.value:
            records = study.finished(definition, budget, _OUT.value)
        else:
            records = study.run(definition, budget, base, aliases, _OUT.value, log=print)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    header = f"Made by `{command}` on {study.machine()}; {study.wall_time(records)}."
    table, figure = study_report.write(definition, budget, records, _OUT.value, header=header)
    print(table.read_text())
    print(f"wrote {table} and {figure}")


if __name__ == "__main__":
    app.run(main)

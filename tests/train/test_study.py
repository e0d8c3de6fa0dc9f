"""Studies: the five LCSM study definitions validate on every task and budget; a small study
trains end to end and writes its table and plot; a rerun trains nothing; claims, stale claims,
changed definitions and diverged runs behave; the report picks the best lr by the seeds' mean."""

import dataclasses
import importlib.util
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lcsm_jax.train import experiment, loop, study, study_report
from tests.train.helpers import ENV

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"parameterisation": 2, "data_dependence": 11, "oscillation": 12, "activation": 8, "tau": 7}


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUDGETS = _load(ROOT / "configs/studies/budgets.py").BUDGETS


def _study(name: str) -> study.Study:
    return _load(ROOT / f"configs/studies/{name}.py").STUDY


def _base(budget: study.Budget):
    name, _, arg = budget.config.partition(":")
    module = _load(ROOT / "configs" / name)
    return module.get_config(arg or None), module.ALIASES


@pytest.mark.parametrize("task", sorted(BUDGETS))
def test_every_study_cell_is_a_valid_experiment_on_every_budget(task):
    assert set(BUDGETS[task]) == {"smoke", "cpu", "paper"}
    for name, count in NAMES.items():
        definition = _study(name)
        assert definition.name == name and len(definition.cells) == count
        for budget in BUDGETS[task].values():
            base, aliases = _base(budget)
            specs = study.plan(definition, budget)
            slices = max(len(budget.slices), 1)
            assert len(specs) == count * slices * len(budget.lrs) * len(budget.seeds)
            assert len({s.name for s in specs}) == len(specs)
            for spec in specs[:: len(budget.lrs) * len(budget.seeds)]:
                exp = experiment.translate(study.configure(base, aliases, definition, budget, spec))
                assert exp.task == task and exp.optim.lr == spec.lr and exp.seed == spec.seed
                assert exp.model.mixer == "lcsm"
                options = dict(exp.model.mixer_options)
                for key, value in spec.cell.overrides.items():
                    assert options[key.removeprefix("model.mixer_options.")] == value


@pytest.mark.parametrize("budget", ["smoke", "cpu", "paper"])
def test_the_lrcssm_comparison_builds_every_cell_on_uea(budget):
    """Each cell's mixer is a catalogue entry that builds at the classifier's width."""
    from flax import nnx

    from lcsm_jax import catalogue

    definition, spec_budget = _study("lrcssm"), BUDGETS["uea"][budget]
    base, aliases = _base(spec_budget)
    first = (spec_budget.seeds[0], spec_budget.lrs[0])
    specs = [s for s in study.plan(definition, spec_budget) if (s.seed, s.lr) == first]
    assert [s.cell.overrides["model"] for s in specs] == ["lrcssm", "lru", "s5", "mamba"]
    for spec in specs:
        exp = experiment.translate(study.configure(base, aliases, definition, spec_budget, spec))
        m = exp.model
        assert exp.task == "uea" and m.mixer == spec.cell.overrides["model"]
        options = {k: v for k, v in m.mixer_options if k != "solver"}
        built = nnx.eval_shape(
            lambda m=m, o=options: catalogue.build(
                m.mixer, embed_dim=m.hidden, rngs=nnx.Rngs(0), **o
            )
        )
        assert built is not None


def test_plan_is_seed_major_and_names_runs():
    definition = _study("parameterisation")
    budget = dataclasses.replace(BUDGETS["mqar"]["cpu"], seeds=(0, 1))
    specs = study.plan(definition, budget)
    assert [s.seed for s in specs] == [0] * 4 + [1] * 4
    assert specs[0].name == "ssm_c_type_0_seq64_kv4_lr0.003_s0"


def test_invalid_definitions_are_refused():
    cell = study.Cell("a", {})
    with pytest.raises(ValueError, match="labels repeat"):
        study.Study("x", "t", "c", (cell, cell))
    with pytest.raises(ValueError, match="same run names"):
        study.Study("x", "t", "c", (cell, study.Cell("A", {})))
    with pytest.raises(ValueError, match="no cells"):
        study.Study("x", "t", "c", ())
    with pytest.raises(ValueError, match="at least one lr"):
        study.Budget("b", "mqar.py", {}, lrs=())
    bad = study.Study("x", "t", "c", (study.Cell("a", {"model.mixer_options.o_type": 99}),))
    budget = BUDGETS["mqar"]["smoke"]
    with pytest.raises(ValueError, match="o_type"):
        study.run(bad, budget, *_base(budget), "/nonexistent/never/written")


def _fake_train(values: dict):
    """A trainer that writes the summary loop.train would, with a value per run name."""
    calls = []

    def train(exp, workdir):
        calls.append(Path(workdir).name)
        value = values[Path(workdir).name]
        if value is None:
            raise loop.NonFiniteLossError("non-finite loss at step 1")
        summary = {"main_metric": "seq64_kv4", "maximize": True, "test": {"seq64_kv4": value}}
        summary.update(stopped="completed", final_step=10, seconds=1.5)
        (Path(workdir) / "summary.json").write_text(json.dumps(summary))
        return summary

    return train, calls


def test_runs_once_resumes_claims_and_reports_best_lr_by_seed_mean(tmp_path):
    definition = _study("parameterisation")
    budget = dataclasses.replace(BUDGETS["mqar"]["cpu"], lrs=(3e-3, 1e-2), seeds=(0, 1))
    base, aliases = _base(budget)
    specs = study.plan(definition, budget)
    values = {s.name: 0.5 for s in specs}
    # SSM: lr 3e-3 has the best single seed (0.9) but lr 1e-2 the best mean (0.8).
    values.update(
        {
            "ssm_c_type_0_seq64_kv4_lr0.003_s0": 0.9,
            "ssm_c_type_0_seq64_kv4_lr0.003_s1": 0.3,
            "ssm_c_type_0_seq64_kv4_lr0.01_s0": 0.7,
            "ssm_c_type_0_seq64_kv4_lr0.01_s1": 0.9,
            "naive_c_type_1_seq64_kv4_lr0.01_s0": None,  # diverged
        }
    )
    # A live process (this test's parent) holds one run; a dead one held another.
    held = tmp_path / "parameterisation" / specs[1].name
    held.mkdir(parents=True)
    (held / "claim").write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    stale = tmp_path / "parameterisation" / specs[2].name
    stale.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (stale / "claim").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    train, calls = _fake_train(values)
    logs = []
    records = study.run(definition, budget, base, aliases, tmp_path, log=logs.append, train=train)
    assert specs[1].name not in calls and specs[2].name in calls
    assert any("busy" in line and specs[1].name in line for line in logs)
    assert len(records) == len(specs) - 1
    (held / "claim").unlink()
    again = study.run(definition, budget, base, aliases, tmp_path, log=logs.append, train=train)
    assert calls.count(specs[1].name) == 1 and len(calls) == len(specs)  # nothing trained twice
    assert len(again) == len(specs)
    assert study.finished(definition, budget, tmp_path) == again

    best = study_report.best(again)
    ssm = best[("SSM (c_type 0)", (64, 4))]
    assert ssm["lr"] == 1e-2 and math.isclose(ssm["value"], 0.8)
    assert math.isclose(ssm["spread"], 0.2) and ssm["seeds"] == 2
    assert math.isclose(ssm["std"], statistics.stdev([0.7, 0.9]))
    naive = best[("naive (c_type 1)", (64, 4))]
    assert naive["lr"] == 3e-3 and naive["value"] == 0.5  # the diverged lr counts as the worst
    assert naive["per_lr"][1e-2] == -math.inf
    table, figure = study_report.write(definition, budget, again, tmp_path, header="made here")
    text = table.read_text()
    assert "8 of 8 runs finished" in text and "made here" in text
    assert "| SSM (c_type 0) | 0.800 ± 0.141 | 0.01 | 0.200 (2) |" in text
    assert figure.stat().st_size > 10_000

    # A changed definition is refused instead of reusing runs trained as something else.
    changed = dataclasses.replace(budget, overrides={**budget.overrides, "steps": 999})
    with pytest.raises(ValueError, match="different configuration"):
        study.run(definition, changed, base, aliases, tmp_path, train=train)
    with pytest.raises(ValueError, match="use another --out"):
        study.run(
            definition,
            BUDGETS["mqar"]["smoke"],
            *_base(BUDGETS["mqar"]["smoke"]),
            tmp_path,
            train=train,
        )


def test_a_small_study_trains_end_to_end_and_a_rerun_trains_nothing(tmp_path):
    command = [sys.executable, str(ROOT / "study.py"), "--study", "parameterisation"]
    command += ["--task", "mqar", "--budget", "smoke", "--out", str(tmp_path)]
    first = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count(": train") == 2
    table = (tmp_path / "parameterisation.md").read_text()
    assert "2 of 2 runs finished" in table and "| SSM (c_type 0) | 0." in table
    assert "| naive (c_type 1) | 0." in table
    assert (tmp_path / "parameterisation.png").stat().st_size > 10_000
    second = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 0 and ": train" not in second.stdout
    assert (tmp_path / "parameterisation.md").read_text() == table


def test_cli_errors_name_the_problem(tmp_path):
    def run(*args):
        command = [sys.executable, str(ROOT / "study.py"), "--out", str(tmp_path), *args]
        return subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=ROOT)

    assert "unknown study 'nope'" in run("--study", "nope").stderr
    assert "unknown budget 'huge'" in run("--study", "tau", "--budget", "huge").stderr
    bad = run("--study", "tau", "--budget", "smoke", "--set", "no_such_key=1")
    assert bad.returncode != 0 and "unknown config override 'no_such_key'" in bad.stderr
    seeds = run("--study", "tau", "--budget", "smoke", "--seeds", "0,x")
    assert seeds.returncode != 0 and "--seeds '0,x' are not integers" in seeds.stderr


@pytest.mark.slow
def test_sigkill_loses_no_finished_run_and_reruns_none(tmp_path):
    """SIGKILL mid-study, rerun the same command: finished runs are kept (not retrained), the
    killed one resumes from its checkpoint, and the table is complete."""
    command = [sys.executable, str(ROOT / "study.py"), "--study", "parameterisation"]
    command += ["--task", "mqar", "--budget", "smoke", "--out", str(tmp_path)]
    command += ["--set", "steps=40,train.save_every=5"]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    runs = tmp_path / "parameterisation"
    for line in proc.stdout:
        if ": train" in line and "[2/2]" in line:
            break
    ckpts = next(p for p in runs.iterdir() if p.name.startswith("naive")) / "checkpoints"
    deadline = time.time() + 300
    while not (ckpts / "10").exists() and time.time() < deadline:
        assert proc.poll() is None, "the study finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = next(p for p in runs.iterdir() if p.name.startswith("ssm")) / "summary.json"
    stamp = done.stat().st_mtime_ns
    again = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[1/2]" in again.stdout and "[1/2] parameterisation ssm" in again.stdout
    assert ": train" not in again.stdout and again.stdout.count(": resume") == 1
    assert done.stat().st_mtime_ns == stamp
    summary = json.loads((ckpts.parent / "summary.json").read_text())
    assert summary["start_step"] >= 10 and summary["final_step"] == 40
    assert "2 of 2 runs finished" in (tmp_path / "parameterisation.md").read_text()

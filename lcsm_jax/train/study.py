"""Studies: a paper table as data (cells of config overrides), run over the one training loop.

A `Study` names its cells (one table row each: the LCSM grid's e/o/s/c/t/τ choices as config
overrides); a `Budget` says how hard to train them (base overrides, MQAR slices, learning rates,
seeds). `plan` expands the two into runs (seed-major, so a table is complete for seed 0 before
seed 1 starts), `run` trains every missing one, resumably:

- a run whose `summary.json` exists is never trained again;
- a killed run (SIGKILL, a lost machine) resumes from its latest checkpoint on the next call;
- several processes may work on one study at once: a run is claimed by a `claim` file holding
  the claimer's pid, and a claim whose process is dead is taken over.

Tables and plots are `study_report`'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lcsm_jax.train import experiment, loop, overrides


@dataclasses.dataclass(frozen=True)
class Cell:
    """One table row: `overrides` maps config keys (the config file's aliases or dotted paths,
    e.g. "model.mixer_options.o_type") to values; `group` colours the plot (e.g. "o DD")."""

    label: str
    overrides: Mapping[str, Any]
    group: str = ""


@dataclasses.dataclass(frozen=True)
class Study:
    """A named grid: `common` overrides every cell shares (e.g. model=lcsm), then each cell's."""

    name: str
    title: str
    claim: str  # the paper's conclusion the study tests
    cells: tuple[Cell, ...]
    common: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"study name {self.name!r}: use lowercase letters, digits and _")
        if not self.cells:
            raise ValueError(f"study {self.name!r} has no cells")
        labels = [c.label for c in self.cells]
        if len(set(labels)) != len(labels):
            raise ValueError(f"study {self.name!r}: cell labels repeat: {labels}")
        slugs = [slug(c.label) for c in self.cells]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"study {self.name!r}: cell labels give the same run names: {slugs}")


@dataclasses.dataclass(frozen=True)
class Budget:
    """How hard to train each cell. `slices`: MQAR (seq_len, num_kv) pairs, each trained
    separately (empty: the config's own, or a task without slices); `metric` empty: the task's
    main metric, else a key of the run's test results (e.g. "validation_bits_per_byte")."""

    name: str
    config: str  # the base config file under configs/, with an optional ":arg" (lm.py:size=paper)
    overrides: Mapping[str, Any]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    slices: tuple[tuple[int, int], ...] = ()
    metric: str = ""
    maximize: bool | None = None  # None: the task's direction
    note: str = ""  # what a reader must know about the setting (printed under the table)

    def __post_init__(self):
        if not self.lrs or not self.seeds:
            raise ValueError(f"budget {self.name!r} needs at least one lr and one seed")
        for s in self.slices:
            if len(s) != 2:
                raise ValueError(f"budget {self.name!r}: slice {s!r} is not (seq_len, num_kv)")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    cell: Cell
    slice: tuple[int, int] | None
    lr: float
    seed: int

    @property
    def name(self) -> str:
        part = "" if self.slice is None else f"_seq{self.slice[0]}_kv{self.slice[1]}"
        return f"{slug(self.cell.label)}{part}_lr{self.lr:g}_s{self.seed}"


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def plan(study: Study, budget: Budget) -> list[RunSpec]:
    return [
        RunSpec(cell, tuple(s) if s else None, lr, seed)
        for seed in budget.seeds
        for s in budget.slices or [None]
        for cell in study.cells
        for lr in budget.lrs
    ]


def _literal(value: Any) -> str:
    text = repr(value)
    if "," in text:  # the override syntax splits items on commas
        raise ValueError(f"override value {value!r} contains a comma")
    return text


def configure(base, aliases: dict[str, str], study: Study, budget: Budget, spec: RunSpec):
    """The run's ConfigDict: base, then the budget's, the study's, the cell's overrides, then
    the slice, lr and seed."""
    items = {**budget.overrides, **study.common, **spec.cell.overrides}
    if spec.slice is not None:
        items.update(seq_len=spec.slice[0], num_kv=spec.slice[1])
    items.update(lr=spec.lr, seed=spec.seed)
    arg = ",".join(f"{k}={_literal(v)}" for k, v in items.items())
    return overrides.apply(base.copy_and_resolve_references(), arg, aliases)


def machine() -> str:
    import jax  # here: a study definition is importable without initialising a backend

    device = jax.devices()[0]
    kind = "" if device.platform == "cpu" else f" {device.device_kind}"
    return (
        f"{socket.gethostname()} ({os.cpu_count()} CPU cores, {platform.machine()}; JAX on "
        f"{jax.device_count()} {device.platform}{kind} device{'s' * (jax.device_count() > 1)})"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(workdir: Path) -> bool:
    """Claims the run for this process; False when a live process on this host holds it."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "claim"
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                held = json.loads(path.read_text())
            except (OSError, ValueError):
                held = {}  # a claim half-written by a killed process
            if held.get("pid") == os.getpid():
                return True
            other_host = held.get("host", socket.gethostname()) != socket.gethostname()
            if other_host or (held.get("pid") and _alive(held["pid"])):
                return False
            path.unlink(missing_ok=True)  # stale: its process is dead
            continue
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        return True
    return False


def _bind(root: Path, task: str, budget: str) -> None:
    """One study directory holds one (task, budget): runs of another would share names."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "study.json"
    mine = {"task": task, "budget": budget}
    if path.exists():
        held = json.loads(path.read_text())
        if held != mine:
            raise ValueError(
                f"{root} holds study runs for task {held.get('task')!r}, budget "
                f"{held.get('budget')!r}, not task {task!r}, budget {budget!r}: use another --out"
            )
    else:
        path.write_text(json.dumps(mine))


def _check_same(workdir: Path, fingerprint: str, name: str) -> None:
    """A finished or started run is reused only for the experiment it was trained as."""
    path = workdir / "experiment.json"
    if path.exists() and path.read_text() != fingerprint:
        raise ValueError(
            f"run {name} in {workdir} was trained with a different configuration than the "
            "study now defines (its experiment.json differs); move that directory away to "
            "retrain it, or restore the study's definition"
        )


def record(spec: RunSpec, summary: dict, budget: Budget) -> dict:
    metric = budget.metric or summary.get("main_metric")
    maximize = summary.get("maximize", True) if budget.maximize is None else budget.maximize
    value = summary.get("test", {}).get(metric)
    return dict(
        run=spec.name,
        cell=spec.cell.label,
        group=spec.cell.group,
        slice=list(spec.slice) if spec.slice else None,
        lr=spec.lr,
        seed=spec.seed,
        metric=metric,
        maximize=maximize,
        value=value,
        stopped=summary.get("stopped", ""),
        final_step=summary.get("final_step"),
        seconds=summary.get("seconds"),
    )


def run(
    study: Study,
    budget: Budget,
    base,
    aliases: dict[str, str],
    out,
    *,
    log: Callable[[str], None] = print,
    train: Callable = loop.train,
) -> list[dict]:
    """Trains every missing run of `plan(study, budget)` under `out/<study.name>/`; returns one
    record per finished run (runs another process holds are left out, and logged "busy")."""
    root = Path(out) / study.name
    specs = plan(study, budget)
    # Every config is built (and so validated) before anything trains.
    configs = [configure(base, aliases, study, budget, s) for s in specs]
    runs = [experiment.translate(c) for c in configs]
    _bind(root, runs[0].task, budget.name)
    records = []
    for i, (spec, exp) in enumerate(zip(specs, runs, strict=True), 1):
        workdir = root / spec.name
        summary_path = workdir / "summary.json"
        head = f"[{i}/{len(specs)}] {study.name} {spec.name}"
        _check_same(workdir, exp.fingerprint(), spec.name)
        if not summary_path.exists():
            if not claim(workdir):
                log(f"{head}: busy (another process holds it)")
                continue
            (workdir / "experiment.json").write_text(exp.fingerprint())
            resumed = (workdir / "checkpoints").exists()
            log(f"{head}: {'resume' if resumed else 'train'}")
            began = time.perf_counter()
            try:
                train(exp, workdir)
            except loop.NonFiniteLossError as err:  # a diverged lr is a result, not a crash
                summary = {**(err.summary or {}), "test": {}, "stopped": str(err)}
                summary_path.write_text(json.dumps(summary, indent=2))
            info = {"machine": machine(), "wall_seconds": time.perf_counter() - began}
            (workdir / "study_run.json").write_text(json.dumps(info, indent=2))
            (workdir / "claim").unlink(missing_ok=True)
        summary = json.loads(summary_path.read_text())
        rec = record(spec, summary, budget)
        value = "diverged" if rec["value"] is None else f"{rec['value']:.4g}"
        log(f"{head}: {rec['metric']} {value} ({rec['stopped']}, step {rec['final_step']})")
        records.append(rec)
    return records


def finished(study: Study, budget: Budget, out) -> list[dict]:
    """The records of the runs already finished under `out/<study.name>/` (nothing trains)."""
    root = Path(out) / study.name
    records = []
    for spec in plan(study, budget):
        path = root / spec.name / "summary.json"
        if path.exists():
            records.append(record(spec, json.loads(path.read_text()), budget))
    return records


def wall_time(records: list[dict]) -> str:
    seconds = sum(r["seconds"] or 0 for r in records)
    return f"training time summed over the {len(records)} finished runs: {seconds / 3600:.2f} h"

"""Sweeps: cells are trained once (a rerun only reports), best over lr per row, a diverged lr is
a result, and the table names the task's main metric."""

from lcsm_jax.train import sweep
from tests.train.helpers import mqar, tiny_config


def test_sweep_trains_each_cell_once_and_reports_best_lr(tmp_path):
    base = tiny_config("steps=3")
    logs = []
    kwargs = dict(models=["gla_core"], d_models=[32], slices=[(32, 2)], lrs=[1e-3, 1e4])
    results = sweep.run(base, mqar.ALIASES, tmp_path, **kwargs, log=logs.append)
    cells = ["gla_core_d32_seq32_kv2_lr0.001", "gla_core_d32_seq32_kv2_lr10000"]
    assert logs == [f"[train] {cell}" for cell in cells]
    assert [r["metric"] for r in results] == ["seq32_kv2"] * 2
    assert 0.0 <= results[0]["value"] <= 1.0
    again = sweep.run(base, mqar.ALIASES, tmp_path, **kwargs, log=logs.append)
    assert logs[2:] == [f"[done] {cell}" for cell in cells]
    assert again == results
    table, figure = sweep.report(results, tmp_path)
    text = table.read_text()
    assert "Best seq32_kv2" in text and "| gla_core | 32 |" in text and figure.exists()
    best = sweep.best_over_lr(results)[("gla_core", 32, (32, 2))]
    assert best["value"] == max(r["value"] for r in results if r["value"] is not None)

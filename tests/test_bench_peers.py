"""Smoke test of ``bench/peers.py``'s PyWorkflow side, on tiny sizes and without DBOS.

Keeps the benchmark code from rotting as the engine changes. It runs the
workloads and checks the shape of what they report; it asserts no timings
and needs none of the peers (DBOS, Celery workers) installed.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pw_side() -> ModuleType:
    return load("bench_peers_pw_side", BENCH / "peers" / "pw_side.py")


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    return load("bench_peers_main", BENCH / "peers.py")


def test_sequential_workloads_report_positive_figures(pw_side: ModuleType) -> None:
    result = pw_side.sequential("memory://", steps=5, workflows=2, repeats=1)
    assert set(result) == {"steps_us", "ten_step_wps", "empty_ms"}
    assert all(value > 0 and math.isfinite(value) for value in result.values())


def test_sequential_workloads_on_sqlite(pw_side: ModuleType, tmp_path: Path) -> None:
    result = pw_side.sequential(f"sqlite:///{tmp_path / 'pw.db'}", steps=3, workflows=1, repeats=1)
    assert result["steps_us"] > 0


def test_per_step_sqlite_counts_commits_and_raw_cost(pw_side: ModuleType, tmp_path: Path) -> None:
    result = pw_side.per_step_sqlite(str(tmp_path), steps=5, repeats=1)
    for sync in ("full", "normal"):
        assert result[f"{sync}_us"] > 0
        assert result[f"{sync}_raw_us"] > 0
        # one commit per step at least; start and finish add a few over 5 steps
        assert result[f"{sync}_commits_per_step"] >= 1
    assert result["memory_us"] > 0


def test_one_workflow_steps(pw_side: ModuleType) -> None:
    assert pw_side.one_workflow_steps("memory://", steps=4, repeats=1)["steps_us"] > 0


def canned(side: str, spec: dict[str, Any], timeout: float) -> dict[str, float]:
    """What the side scripts print, without running them."""
    if side == "dbos_side":
        return {
            "steps_us": 4000.0,
            "ten_step_wps": 25.0,
            "empty_ms": 5.0,
            "journal_mode_is_wal": 1.0,
        }
    return {"steps_us": 800.0, "ten_step_wps": 60.0, "empty_ms": 9.0}


def test_table_rows_and_markdown(
    peers: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "run_side", canned)
    report = peers.Report()
    peers.group_sequential(peers.QUICK, tmp_path, report)
    by_key = {row.key: row for row in report.rows}
    assert by_key["steps"].ratio == pytest.approx(5.0)
    assert by_key["steps"].verdict == "PASS"
    assert by_key["ten_step"].verdict == "MISS"  # 60 / 25 = 2.4x < 5x
    assert by_key["empty"].verdict == "MISS"  # 5 / 9 < 2x
    markdown = peers.render(report, markdown=True)
    assert "| workload | PyWorkflow | peer | ratio | target | result | notes |" in markdown
    assert markdown.count("\n| ") == 1 + len(report.rows)
    assert "MISS" in peers.render(report, markdown=False)


def test_only_rejects_unknown_rows(peers: ModuleType) -> None:
    with pytest.raises(SystemExit):
        peers.main(["--only", "nonsense"])


def test_cold_start_figures(pw_side: ModuleType, tmp_path: Path) -> None:
    result = pw_side.cold(str(tmp_path), runs=1)
    assert set(result) == {
        "python_ms",
        "import_ms",
        "spawn_to_result_ms",
        "start_to_result_ms",
        "help_ms",
    }
    assert all(value > 0 for value in result.values())


def test_best_of_rounds(peers: ModuleType) -> None:
    rounds = [{"steps_us": 900.0, "ten_step_wps": 50.0}, {"steps_us": 800.0, "ten_step_wps": 40.0}]
    assert peers.best_of(rounds) == {"steps_us": 800.0, "ten_step_wps": 50.0}

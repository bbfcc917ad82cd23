"""Replay recorded histories: `runs export`, pyworkflow.testing.replay and `pyworkflow replay`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pyworkflow
from pyworkflow import Workflow, create_hook, get_result, resume_hook, sleep, start, step, workflow
from pyworkflow import runtime as runtime_module
from pyworkflow.cli import app, main
from pyworkflow.errors import WorkflowNotFoundError
from pyworkflow.history import FORMAT, VERSION, aexport_history, export_history
from pyworkflow.testing import HistoryFormatError, HistoryReport, ReplayMismatchError, replay
from pyworkflow.workflow import WorkflowFunction

bodies: Counter[str] = Counter()
SECRET = "hmac-secret-never-exported-0123456789"


@step()
async def bill(amount: int) -> dict[str, int]:
    bodies["bill"] += 1
    return {"charged": amount}


@step()
async def bill_card(amount: int) -> dict[str, int]:
    bodies["bill_card"] += 1
    return {"charged": amount}


@step()
async def send_parcel(receipt: dict[str, int]) -> str:
    bodies["send_parcel"] += 1
    return f"shipped {receipt['charged']}"


@step()
async def note_shipment(note: str) -> str:
    bodies["note_shipment"] += 1
    return note


def make_order(variant: str = "v1") -> WorkflowFunction[..., Any]:
    """Workflow ``replayed_order`` as deployed (``v1``) or as changed since (other variants).

    Every variant has the same name and origin, so each one made replaces the
    last in the registry, as a new deploy of the module would.
    """

    if variant == "needs_currency":

        @workflow(name="replayed_order")
        async def order(amount: int, currency: str) -> Any:  # a new required argument
            return currency

        return order

    @workflow(name="replayed_order")  # type: ignore[no-redef]  # one qualname: one origin, as a redeploy
    async def order(amount: int) -> Any:
        if variant == "sleep_first":
            await sleep("0.01s")
        elif variant == "renamed":
            receipt = await bill_card(amount)
        else:
            receipt = await bill(amount)
        if variant == "sleep_first":
            receipt = await bill(amount)
        approval = create_hook(secret=SECRET)
        decision = await approval
        await sleep("0.01s")
        if variant == "shorter":
            return decision
        shipped = await send_parcel(receipt)
        result = [decision, shipped, pyworkflow.random() < 1]
        if variant == "longer":
            await note_shipment(shipped)
        elif variant == "raises":
            raise ValueError("a new bug")
        elif variant == "hangs":
            await asyncio.Event().wait()  # nothing durable: nothing will ever wake it
        return result

    return order


def run_order(amount: int = 5) -> str:
    """Run ``replayed_order`` (v1) to its end, resuming its hook; returns the run id."""
    run_id = start(make_order("v1"), amount)
    token = None
    deadline = time.monotonic() + 10
    while token is None and time.monotonic() < deadline:
        created = [e for e in pyworkflow.get_events(run_id) if e.type.value == "hook_created"]
        if created:
            token = str(created[0].payload["token"])
        else:
            time.sleep(0.01)
    assert token is not None, "the run never created its hook"
    resume_hook(token, {"approved": True})
    assert get_result(run_id, timeout=10) == [{"approved": True}, f"shipped {amount}", True]
    return run_id


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    pyworkflow.configure(storage=url, poll_interval=0.05)
    return url


@pytest.fixture
def exported(sqlite_url: str, tmp_path: Path) -> tuple[str, Path]:
    """A completed run of ``replayed_order`` (v1) exported to a file; (run id, file)."""
    run_id = run_order()
    path = tmp_path / "order.json"
    path.write_text(export_history(run_id))
    return run_id, path


# ----- export -----


def test_export_writes_the_run_and_its_log_byte_faithfully(exported: tuple[str, Path]) -> None:
    run_id, path = exported
    data = json.loads(path.read_text())
    runtime = runtime_module.get_runtime()
    run = runtime.call(runtime.storage.get_run, run_id)
    events = runtime.call(runtime.storage.get_events, run_id)
    assert data["format"] == FORMAT == "pyworkflow-history" and data["version"] == VERSION == 1
    assert data["run"]["run_id"] == run_id and data["run"]["workflow"] == "replayed_order"
    assert data["run"]["input"] == run.input  # the serializer's text, unchanged
    assert data["run"]["serializer"] == run.serializer == "json"
    assert data["run"]["status"] == "completed" and data["run"]["result"] == run.result
    assert [e["seq"] for e in data["events"]] == [e.seq for e in events]
    assert [e["type"] for e in data["events"]] == [e.type.value for e in events]
    for written, stored in zip(data["events"], events, strict=True):
        assert written["correlation_id"] == stored.correlation_id
        assert written["timestamp"] == stored.timestamp.isoformat()
        for key in ("result", "value", "data", "input", "due_at", "name"):
            if key in stored.payload:
                assert written["payload"][key] == stored.payload[key], (stored, key)


def test_export_keeps_hook_tokens_and_secrets_out(exported: tuple[str, Path]) -> None:
    run_id, path = exported
    text = path.read_text()
    tokens = {
        str(e.payload["token"]) for e in pyworkflow.get_events(run_id) if "token" in e.payload
    }
    assert tokens  # hook_created, hook_received, hook_disposed all carry it in storage
    assert SECRET not in text
    assert not any(token in text for token in tokens)
    hook_events = [e for e in json.loads(text)["events"] if e["type"].startswith("hook_")]
    assert {e["type"] for e in hook_events} == {"hook_created", "hook_received", "hook_disposed"}
    assert all(e["payload"]["token"] == "***" for e in hook_events)
    assert replay(path, workflows=[make_order("v1")])[0].deterministic  # not needed to replay


# ----- replay, the Python API -----


def test_replay_passes_against_the_same_code_and_runs_nothing(
    exported: tuple[str, Path], sqlite_url: str
) -> None:
    run_id, path = exported
    before = pyworkflow.get_events(run_id)
    runtime_module.reset()  # no runtime, no storage: replay needs neither
    bodies.clear()
    reports = replay([path], workflows=[make_order("v1")])
    assert reports == [
        HistoryReport(
            source=str(path),
            run_id=run_id,
            workflow="replayed_order",
            deterministic=True,
            operations=5,
        )
    ]  # bill, the hook, the sleep, send_parcel and random()
    assert runtime_module._runtime is None  # nothing started a runtime
    assert dict(bodies) == {}  # no step body ran
    pyworkflow.configure(storage=sqlite_url)
    assert pyworkflow.get_events(run_id) == before  # nothing written


def test_replay_accepts_a_loaded_document_a_string_path_and_a_directory(
    exported: tuple[str, Path],
) -> None:
    run_id, path = exported
    v1 = make_order("v1")
    assert replay(json.loads(path.read_text()), workflows=[v1])[0].source == "<dict>"
    assert replay(str(path), workflows=[v1])[0].run_id == run_id
    assert [r.source for r in replay(path.parent, workflows=[v1])] == [str(path)]


@pytest.mark.parametrize(
    ("variant", "position", "recorded", "called"),
    [
        ("renamed", "1", "step 'bill'", "step 'bill_card'"),
        ("sleep_first", "1", "step 'bill'", "sleep 'sleep'"),
    ],
)
def test_replay_against_changed_code_names_run_position_and_both_operations(
    exported: tuple[str, Path], variant: str, position: str, recorded: str, called: str
) -> None:
    run_id, path = exported
    with pytest.raises(ReplayMismatchError) as caught:
        replay([path], workflows=[make_order(variant)])
    error = caught.value
    assert isinstance(error, AssertionError)
    [report] = error.reports
    assert (report.run_id, report.position, report.recorded, report.called) == (
        run_id,
        position,
        recorded,
        called,
    )
    message = str(error)
    for part in (str(path), run_id, f"operation {position}", recorded, called):
        assert part in message, (part, message)


def test_replay_reports_every_diverging_history_in_one_error(
    sqlite_url: str, tmp_path: Path
) -> None:
    paths = []
    for amount in (1, 2, 3):
        paths.append(tmp_path / f"run{amount}.json")
        paths[-1].write_text(export_history(run_order(amount)))
    good = paths[1]
    data = json.loads(good.read_text())  # a history of other code: where bill was, a sleep
    data["events"] = [e for e in data["events"] if e["correlation_id"] != "1"]
    for i, event in enumerate(data["events"], 1):
        event["seq"] = i
    with pytest.raises(ReplayMismatchError) as caught:
        replay([paths[0], data, paths[2]], workflows=[make_order("renamed")])
    assert [r.source for r in caught.value.reports] == [str(paths[0]), "<dict>", str(paths[2])]
    assert "3 history(ies) diverge" in str(caught.value)
    assert replay([good], workflows=[make_order("v1")])[0].deterministic


def test_a_dropped_or_added_trailing_operation_is_a_divergence(
    exported: tuple[str, Path],
) -> None:
    _, path = exported
    with pytest.raises(ReplayMismatchError) as shorter:
        replay(path, workflows=[make_order("shorter")])
    [report] = shorter.value.reports
    assert (report.position, report.recorded, report.called) == (
        "4",
        "step 'send_parcel'",
        "nothing",
    )
    assert "ends without calling it" in str(shorter.value)
    with pytest.raises(ReplayMismatchError) as longer:
        replay(path, workflows=[make_order("longer")])
    [report] = longer.value.reports
    assert (report.position, report.called) == ("6", "step 'note_shipment'")
    assert report.recorded == "the end of the run"
    assert "the log has the end of the run (workflow_completed, event seq" in str(longer.value)


@pytest.mark.parametrize(
    ("variant", "called"),
    [("raises", "raises ValueError: a new bug"), ("hangs", "nothing (it does not end)")],
)
def test_a_completed_run_whose_code_now_raises_or_never_ends_diverges(
    exported: tuple[str, Path], variant: str, called: str
) -> None:
    _, path = exported
    with pytest.raises(ReplayMismatchError) as caught:
        replay(path, workflows=[make_order(variant)])
    [report] = caught.value.reports
    assert (report.position, report.recorded, report.called) == (
        "end",
        "the end of the run",
        called,
    )
    assert report.operations == 5


def test_an_input_that_no_longer_fits_is_a_divergence(exported: tuple[str, Path]) -> None:
    _, path = exported
    with pytest.raises(ReplayMismatchError, match="input does not fit") as caught:
        replay(path, workflows=[make_order("needs_currency")])
    [report] = caught.value.reports
    assert report.position == "input" and "missing 1 required positional argument: 'currency'" in (
        report.called or ""
    )


def test_a_workflow_neither_given_nor_registered_fails_clearly(
    exported: tuple[str, Path],
) -> None:
    _, path = exported
    data = json.loads(path.read_text())
    data["run"]["workflow"] = "renamed_away"
    with pytest.raises(WorkflowNotFoundError, match="'renamed_away'") as caught:
        replay(data, workflows=[make_order("v1")])
    assert "<dict>" in str(caught.value) and "known: " in str(caught.value)


# ----- malformed files -----


def _broken(path: Path, change: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(format="temporal-history"), "format: expected 'pyworkflow-history'"),
        (lambda d: d.update(version=2), "version 2 is not one this PyWorkflow reads"),
        (lambda d: d.update(version=True), "version True is not one"),
        (lambda d: d.pop("run"), "run: expected an object"),
        (lambda d: d["run"].pop("input"), "run: missing field 'input'"),
        (lambda d: d["run"].update(input=7), "run.input: expected str, got 7"),
        (lambda d: d["run"].update(status="lost"), "run.status: unknown status 'lost'"),
        (lambda d: d["run"].update(created_at="yesterday"), "run.created_at: not an ISO 8601"),
        (lambda d: d.update(events={}), "events: expected a list"),
        (lambda d: d["events"][1].update(seq="2"), "events[1].seq: expected int"),
        (lambda d: d["events"][1].update(seq=5), "events[1].seq: expected 2 (dense from 1)"),
        (lambda d: d["events"][0].update(type="nope"), "events[0].type: unknown event type"),
        (lambda d: d["events"][0].update(payload=[]), "events[0].payload: expected dict"),
        (lambda d: d["events"][2]["payload"].pop("result"), "missing field 'result'"),
        (lambda d: d["events"][0].update(timestamp="2026-01-01T00:00:00"), "without a time zone"),
    ],
)
def test_a_malformed_history_names_the_file_and_what_is_wrong(
    exported: tuple[str, Path], tmp_path: Path, change: Any, problem: str
) -> None:
    _, path = exported
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_broken(path, change)))
    with pytest.raises(HistoryFormatError) as caught:
        replay([path, bad], workflows=[make_order("v1")])
    assert type(caught.value) is HistoryFormatError  # never a raw KeyError or TypeError
    assert str(caught.value).startswith(f"history {bad}: "), str(caught.value)
    assert problem in str(caught.value)


def test_unreadable_files_are_all_named(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text("[]")
    with pytest.raises(HistoryFormatError) as caught:
        replay([tmp_path / "a.json", tmp_path / "b.json", tmp_path / "missing.json"])
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"history {tmp_path / 'a.json'}: not JSON")
    assert lines[1] == f"history {tmp_path / 'b.json'}: document: expected a JSON object"
    assert lines[2].startswith(f"history {tmp_path / 'missing.json'}: cannot read it")


def test_an_undecodable_payload_is_a_format_error(exported: tuple[str, Path]) -> None:
    _, path = exported

    def corrupt(data: dict[str, Any]) -> None:
        data["events"][2]["payload"]["result"] = "{not what json wrote"

    with pytest.raises(HistoryFormatError, match="cannot decode 'result' of event seq 3"):
        replay(_broken(path, corrupt), workflows=[make_order("v1")])


# ----- the command line -----


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_cli_export_to_stdout_and_to_a_file(exported: tuple[str, Path], sqlite_url: str) -> None:
    run_id, path = exported
    out = invoke("--storage", sqlite_url, "runs", "export", run_id)
    assert out.exit_code == 0, out.output
    printed = json.loads(out.stdout)
    written = json.loads(path.read_text())
    printed.pop("exported_at"), written.pop("exported_at")
    assert printed == written
    target = path.parent / "cli.json"
    out = invoke("--storage", sqlite_url, "runs", "export", run_id, "-o", str(target))
    assert out.exit_code == 0 and out.stdout == ""
    assert json.loads(target.read_text())["run"]["run_id"] == run_id


def test_cli_export_of_an_unknown_run_is_one_line_and_exit_1(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["pyworkflow", "--storage", sqlite_url, "runs", "export", "nope"]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: no run with id 'nope' in {sqlite_url}"
    assert "Traceback" not in captured.err and captured.out == ""


def test_cli_replay_exit_codes_and_lines(exported: tuple[str, Path], tmp_path: Path) -> None:
    run_id, path = exported
    make_order("v1")  # the code deployed now
    ok = invoke("replay", str(path))
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == f"{path}: run {run_id} (replayed_order): ok (5 operations replayed)\n"
    make_order("renamed")
    diverged = invoke("replay", str(path))
    assert diverged.exit_code == 1
    assert diverged.stdout.startswith(
        f"{path}: run {run_id} (replayed_order): diverged: operation 1: "
    )
    assert "step 'bill'" in diverged.stdout and "step 'bill_card'" in diverged.stdout
    as_json = json.loads(invoke("replay", str(path), "--json").stdout)
    assert as_json == [
        {
            "file": str(path),
            "status": "diverged",
            "run_id": run_id,
            "workflow": "replayed_order",
            "operations": 0,
            "position": "1",
            "recorded": "step 'bill'",
            "called": "step 'bill_card'",
            "message": as_json[0]["message"],
        }
    ]
    (tmp_path / "bad.json").write_text("{")
    broken = invoke("replay", str(path), str(tmp_path / "bad.json"))
    assert broken.exit_code == 2  # unreadable wins over diverged
    lines = broken.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{tmp_path / 'bad.json'}: error: not JSON")
    make_order("v1")


def test_cli_replay_imports_modules_with_m(
    exported: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = exported
    data = json.loads(path.read_text())
    data["run"]["workflow"] = "elsewhere_flow"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    unknown = invoke("replay", str(other))
    assert unknown.exit_code == 2
    assert "'elsewhere_flow'" in unknown.stdout and "-m MODULE" in unknown.stdout
    (tmp_path / "elsewhere.py").write_text(
        "from pyworkflow import workflow\n"
        "from tests.test_replay_histories import make_order\n"
        "elsewhere_flow = workflow(name='elsewhere_flow')(make_order('v1').fn)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = invoke("replay", str(other), "-m", "elsewhere")
    assert found.exit_code == 0, found.output
    assert "ok (5 operations replayed)" in found.stdout


def test_replay_is_the_function_and_loads_without_pytest() -> None:
    code = (
        "import sys\n"
        "sys.modules['pytest'] = None\n"
        "import pyworkflow.testing.histories\n"
        "from pyworkflow.testing import ReplayMismatchError, replay\n"
        "assert callable(replay) and replay.__module__ == 'pyworkflow.testing.histories'\n"
        "assert issubclass(ReplayMismatchError, AssertionError)\n"
        "import pyworkflow.cli.replay_cmd\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


class Greeting(Workflow):
    name = "greeting_replayed"

    async def run(self, who: str) -> str:
        await sleep("0.01s")
        return await note_shipment(f"hello {who}")


@pytest.mark.anyio
async def test_a_class_workflow_replays_inside_an_async_test() -> None:
    pyworkflow.configure(storage="memory://", poll_interval=0.05)
    run_id = await Greeting().start("ana")
    assert await pyworkflow.aget_result(run_id, timeout=10) == "hello ana"
    history = json.loads(await aexport_history(run_id))
    [report] = replay(history, workflows=[Greeting])
    assert report.deterministic and report.operations == 2 and report.workflow == Greeting.name

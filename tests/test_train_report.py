"""What a run reports: status.json (RunStatus) and lr_find.json (LRFinderResult) read and written
by one type each, old and foreign files included; the run-state registry; the sentences, rows
and durations the Train page shows; the learning rate as typed (CLI and page)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detviz.train import LRFinderResult, RunFolder, RunStatus, TrainConfig, parse_learning_rate
from detviz.train.config import AUTO_LR, learning_rate_text
from detviz.train.report import (
    LIVE_STATES,
    LR_FIND,
    STATES,
    RunState,
    config_differences,
    final_row,
    format_duration,
    progress_text,
    state_sentence,
    summary_row,
)
from detviz.train.runs import RunSummary

# status.json as detviz wrote it before RunStatus: a training run after its end, a finder job
TRAINING_STATUS = {
    "state": "finished", "created": 1.7e9, "updated": 1.7e9 + 60, "pid": 4242, "launched": 1.7e9 + 1,
    "started": 1.7e9 + 5, "epochs": 2, "total_steps": 12, "device": "cuda:0", "error": "", "best": 0.31,
    "step": 12, "epoch": 2, "progress": 1.0, "eta_seconds": 0.0, "images_per_second": 40.5,
    "gpu_memory_gb": 1.5, "metrics": {"val_loss": 1.0, "val_map": 0.31}, "finished": 1.7e9 + 59,
}  # fmt: skip
FINDER_STATUS = {
    "state": "cancelled", "created": 1.7e9, "kind": LR_FIND, "pid": 7, "launched": 1.7e9, "started": 1.7e9 + 2,
    "error": "", "cancel_requested": 1.7e9 + 3, "finished": 1.7e9 + 4, "updated": 1.7e9 + 4,
}  # fmt: skip


@pytest.mark.parametrize("written", [TRAINING_STATUS, FINDER_STATUS, {"state": "queued", "created": 1.0}])
def test_run_status_reads_and_writes_the_keys_of_existing_run_folders(written: dict, tmp_path: Path) -> None:
    status = RunStatus.from_json(json.dumps(written))
    assert status.to_dict() == written and json.loads(status.to_json()) == written and not status.extra
    assert status.state == written["state"] and status.is_lr_find == (written.get("kind") == LR_FIND)
    run = RunFolder(tmp_path)
    run.status_path.write_text(json.dumps(written, indent=2))
    assert run.read_status() == status


def test_run_status_keeps_what_it_does_not_know_and_never_raises_on_reading(tmp_path: Path) -> None:
    newer = {"state": "running", "step": 3, "shards": [1, 2], "best": None, "epoch": "two", "metrics": [1]}
    status = RunStatus.from_dict(newer)
    assert status.step == 3 and status.best is None and status.epoch is None and status.metrics is None
    assert status.extra == {"shards": [1, 2], "epoch": "two", "metrics": [1]}  # kept as read, not used
    assert status.to_dict() == {"state": "running", "step": 3, "shards": [1, 2], "epoch": "two", "metrics": [1]}
    assert RunStatus.from_dict({"state": None}).state == "unknown" and RunStatus().to_dict() == {"state": "unknown"}
    with pytest.raises(ValueError, match="JSON object"):
        RunStatus.from_json("[1, 2]")
    run = RunFolder(tmp_path)
    assert run.read_status() == RunStatus()  # no file yet
    for broken in ("", '{"state": "runn', "[]", "null"):
        run.status_path.write_text(broken)
        assert run.read_status().state == "unknown" and run.state() == "unknown"
    run.status_path.write_text(json.dumps(newer))
    written = run.write_status(step=4, device="cpu")
    assert json.loads(run.status_path.read_text()) == written.to_dict()
    assert written.step == 4 and written.extra["shards"] == [1, 2] and written.updated is not None
    with pytest.raises(TypeError):
        run.write_status(stepp=5)  # a misspelt key fails at once, not as a silently ignored key


def test_the_run_states_are_one_registry() -> None:
    assert [str(s) for s in STATES] == ["queued", "running", "finished", "failed", "cancelled"]
    assert set(LIVE_STATES) < set(STATES) and LIVE_STATES == (RunState.QUEUED, RunState.RUNNING)
    assert json.loads(RunStatus(state=RunState.RUNNING).to_json())["state"] == "running"


def test_lr_finder_result_reads_old_files_and_refuses_broken_ones(tmp_path: Path) -> None:
    old = {"lrs": [1e-6, 1e-3], "losses": [2.0, 1.0], "smoothed": [2.0, 1.5], "suggestion": 1e-3, "steepest": None}
    result = LRFinderResult.from_json(json.dumps(old))  # written before minimum and warning existed
    assert result.minimum is None and result.warning == "" and result.steepest is None
    assert result.to_dict() == old | {"minimum": None, "warning": ""}
    assert LRFinderResult.from_json(result.to_json()) == result
    run = RunFolder(tmp_path)
    assert run.lr_find() is None
    run.write_lr_find(result)
    assert run.lr_find() == result and json.loads(run.lr_find_path.read_text())["suggestion"] == 1e-3
    for broken in (old | {"suggestion": None}, old | {"lrs": "fast"}, {"suggestion": 1e-3}, [1]):
        run.lr_find_path.write_text(json.dumps(broken))
        assert run.lr_find() is None
        with pytest.raises(ValueError):
            LRFinderResult.from_json(json.dumps(broken))


def test_state_sentence_says_what_happens_and_what_to_do() -> None:
    assert state_sentence("queued", RunStatus()).startswith("Queued")
    running = state_sentence("running", RunStatus(step=40, total_steps=300, eta_seconds=200))
    assert running == "Running: step 40 of 300, about 3 min 20 s left."
    assert "learning rate" in state_sentence("running", RunStatus(kind=LR_FIND))
    finished = state_sentence("finished", RunStatus(started=100, finished=142, best=0.41234))
    assert finished == "Finished in 42 s, best validation score 0.4123."
    assert state_sentence("finished", RunStatus(created=100, finished=160)) == "Finished in 1 min 00 s."
    assert "--resume" in state_sentence("cancelled", RunStatus(step=3, total_steps=9))
    assert state_sentence("failed", RunStatus(error="the loss became nan at epoch 1, step 3.")) == (
        "Failed: the loss became nan at epoch 1, step 3. The end of its log is below."
    )
    assert "without saying why" in state_sentence("failed", RunStatus())
    assert "No readable status.json" in state_sentence("unknown", RunStatus())
    assert [format_duration(s) for s in (0, 59.6, 200, 7500)] == ["0 s", "1 min 00 s", "3 min 20 s", "2 h 05 min"]
    watched = RunStatus(step=30, total_steps=120, eta_seconds=95.0)
    assert progress_text("running", watched) == "step 30 of 120, about 1 min 35 s left"
    assert (
        progress_text("cancelled", watched) == "step 30 of 120"
        and progress_text("queued", RunStatus()) == "step 0 of ?"
    )


def test_summary_row_and_config_differences() -> None:
    status = RunStatus(state="finished", epoch=2, best=0.5, device="cpu", created=0.0)
    config = TrainConfig(epochs=3, backbone="resnet18", pretrained=True).to_dict()
    row = summary_row(RunSummary("a", Path("a"), "finished", status, config))
    assert row["epochs"] == "2 / 3" and row["backbone"] == "resnet18 (ImageNet)" and row["anchors"] == "default"
    assert row["job"] == "training" and row["best"] == 0.5 and row["loss"] == "focal"
    finder = summary_row(RunSummary("f", Path("f"), "running", RunStatus(kind=LR_FIND), TrainConfig(model="largest").to_dict()))  # fmt: skip
    assert finder["job"] == "LR finder" and finder["epochs"] == "-" and finder["loss"] == "-"
    configs = {
        "a": TrainConfig(name="a", lr=1e-3).to_dict(),
        "b": TrainConfig(name="b", lr=3e-3, loss="bce").to_dict(),
        "c": TrainConfig(name="c", lr=1e-3).to_dict(),
    }
    assert config_differences(configs) == {
        "loss": {"a": "focal", "b": "bce", "c": "focal"},
        "lr": {"a": 1e-3, "b": 3e-3, "c": 1e-3},
    }
    assert config_differences({"a": configs["a"], "c": configs["c"]}) == {}
    final = final_row(RunSummary("t", Path("t"), "finished", RunStatus.from_dict(TRAINING_STATUS), {}))
    assert final == {"run": "t", "state": "finished", "epochs": 2, "best": 0.31, "val_loss": 1.0, "val_map": 0.31,
                     "images/s": 40.5, "time": "54 s"}  # fmt: skip
    assert final_row(RunSummary("q", Path("q"), "queued", RunStatus(), {}))["time"] == "-"


def test_a_typed_learning_rate_means_the_same_on_the_command_line_and_the_page() -> None:
    for auto in (*AUTO_LR, " AUTO ", "Find"):
        assert parse_learning_rate(auto) == 0.0
    assert parse_learning_rate(" 3e-3 ") == 0.003 and parse_learning_rate("1") == 1.0
    for text, message in [("fast", "Learning rate 'fast': type a number such as 0.003, or 'auto'."),
                          ("-1", "Learning rate -1: it must be a positive number (or 'auto')."),
                          ("0", "Learning rate 0: it must be a positive number (or 'auto')."),
                          ("inf", "Learning rate inf: it must be a positive number (or 'auto').")]:  # fmt: skip
        with pytest.raises(ValueError) as refused:
            parse_learning_rate(text)
        assert str(refused.value) == message
    for lr in (0.0, 3e-4, 0.123456789):
        assert parse_learning_rate(learning_rate_text(lr)) == lr
    assert learning_rate_text(0.0) == "auto" and learning_rate_text(3e-4) == "0.0003"

"""Classroom (read-only) mode: the decision from $DETVIZ_READONLY and the server address, what
each page hides (and what still works), and every action handler refusing on its own, so a
crafted request (a link, a session state, a direct call) changes nothing on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import APP_TIMEOUT, make_voc, run_app, texts, voc_xml
from streamlit.testing.v1 import AppTest

from detviz.data.spec import DatasetSpec
from detviz.ladder import LADDER
from detviz.train import RunFolder, TrainConfig
from pages.ui import access, keys
from pages.ui.models import UPLOAD, upload_path

LOCK = ":material/lock: Classroom mode:"
ON, OFF, LOCAL = ("1", "true", "Yes", " ON "), ("0", "false", "NO", "off"), ("localhost", "127.0.0.1", "::1")


@pytest.fixture
def classroom(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app in read-only mode (data_root's folders)."""
    monkeypatch.setenv(access.ENV, "1")
    return data_root


# --- the decision ------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [*LOCAL, "LOCALHOST", "[::1]", "0.0.0.0", "192.168.1.20", "::", "", None])
@pytest.mark.parametrize("setting", [*ON, *OFF, "", "  ", None, "maybe", "2", "disable"])
def test_the_decision_table(setting: str | None, address: str | None) -> None:
    """Mutations killed: an unknown value read as writable (fail open), the address ignored when the
    variable is unset, an empty address (every interface) taken for localhost, case or blanks
    mattering, ::1 missing from the local addresses."""
    local = (address or "").strip("[]").lower() in LOCAL
    expected = {**dict.fromkeys(ON, True), **dict.fromkeys(OFF, False), "": not local, "  ": not local}
    assert access.is_read_only(setting, address) is expected.get(setting or "", True)
    problem = access.setting_problem(setting)
    assert bool(problem) is (setting in ("maybe", "2", "disable"))  # only a value we cannot read
    assert not problem or (repr(setting) in problem and "read-only" in problem)


def _show_read_only() -> None:
    import streamlit as st

    from pages import ui

    st.write(f"read_only={ui.read_only()}")


@pytest.mark.parametrize(("setting", "expected"), [("1", True), ("off", False), (None, False), ("maybe", True)])
def test_read_only_reads_the_environment_and_the_address(setting, expected, monkeypatch) -> None:
    """Mutation killed: read_only() not reading $DETVIZ_READONLY (or the address: unset here, the
    AppTest server's localhost from .streamlit/config.toml makes it writable)."""
    if setting is None:
        monkeypatch.delenv(access.ENV)
    else:
        monkeypatch.setenv(access.ENV, setting)
    at = AppTest.from_function(_show_read_only, default_timeout=APP_TIMEOUT).run()
    assert texts(at.markdown) == [f"read_only={expected}"]


def test_a_bad_value_warns_once_and_locks(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutations killed: a bad value failing open, or passing silently."""
    monkeypatch.setenv(access.ENV, "maybe")
    at = run_app("pages/train.py")
    assert [w for w in texts(at.warning) if access.ENV in w] == [access.setting_problem("maybe")]
    assert any(c.startswith(LOCK) for c in texts(at.caption)) and not [b for b in at.button if b.label == "Launch"]


# --- what the pages hide, and what still works --------------------------------------------------


@pytest.fixture
def stand_in() -> Iterator[subprocess.Popen]:
    """A process standing in for a running run's trainer (cancel would SIGTERM it)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _runs(root: Path, process: subprocess.Popen) -> tuple[RunFolder, RunFolder]:
    """A finished run "done" and a running one "busy" (its process the stand-in)."""
    done = RunFolder.create(root, TrainConfig(epochs=1), "done")
    done.write_status(state="finished", epoch=1, epochs=1, progress=1.0)
    busy = RunFolder.create(root, TrainConfig(epochs=4), "busy")
    busy.write_status(state="running", pid=process.pid, started=time.time(), epoch=1, epochs=4, progress=0.25)
    return done, busy


def _on_disk(root: Path) -> dict[str, bytes]:
    """Every file under the runs folder with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_train_page_watches_and_compares_but_launches_cancels_and_deletes_nothing(classroom, stand_in) -> None:
    """Mutations killed: Launch, Find, Cancel or Delete still shown read-only, the lock line
    missing, watching or the runs table hidden along with them, a hidden button's session state
    still acting."""
    root = classroom / "runs"
    _runs(root, stand_in)
    before = _on_disk(root)
    at = run_app("pages/train.py")
    runs_line = f"{LOCK} launching, cancelling or deleting runs is off here; {access.WHERE}."
    data_line = f"{LOCK} opening other datasets is off here."
    assert sorted(c for c in texts(at.caption) if c.startswith(LOCK)) == [runs_line, data_line, data_line]
    assert list(at.radio(key=keys.TRAIN + keys.DATA_KIND).options) == ["demo"]  # the form's picker too
    assert not {"Launch", "Find the learning rate"} & {b.label for b in at.button}
    assert any("python -m detviz.train" in c.value for c in at.code)  # the command to copy still shows

    at = run_app("pages/train.py", train_view="Watch", run="busy")
    assert any(m.startswith("### Run busy") and "running" in m for m in texts(at.markdown))
    assert not [b for b in at.button if b.label == "Cancel"]
    at = run_app("pages/train.py", train_view="Watch", run="done")
    assert any(m.startswith("### Run done") and "finished" in m for m in texts(at.markdown))

    at = run_app("pages/train.py", train_view="Runs")
    assert set(at.dataframe[0].value["run"]) == {"done", "busy"}
    assert set(at.multiselect(key=keys.TRAIN_COMPARE).value) == {"busy", "done"}  # comparing stays
    assert all("Delete" not in e.label for e in at.expander)
    assert not [b for b in at.button if b.label == "Delete"]
    at.session_state[keys.TRAIN_DELETE] = "done"  # the hidden Delete form, filled in by hand
    at.session_state[keys.TRAIN_DELETE_SURE] = True
    at.session_state[f"{keys.TRAIN_CANCEL}busy"] = True
    at.run()
    assert not at.exception and _on_disk(root) == before and stand_in.poll() is None


def test_train_page_writable_shows_every_button(data_root: Path, stand_in) -> None:
    """The control for the test above (mutation killed: the buttons hidden whatever the mode)."""
    _runs(data_root / "runs", stand_in)
    assert "Launch" in {b.label for b in run_app("pages/train.py").button}
    at = run_app("pages/train.py", train_view="Watch", run="busy")
    assert [b.label for b in at.button if b.label == "Cancel"] == ["Cancel"]
    assert not any(c.startswith(LOCK) for c in texts(at.caption))


def _ssd_checkpoint(folder: Path) -> Path:
    from test_lesson import save

    return save(folder, "mine.pt", "ssd", class_bias=1.0)


def test_predictions_offer_no_upload_even_when_asked(classroom: Path) -> None:
    """Mutations killed: the upload option offered read-only (in the list, from ?ckpt=, or from
    the session state), the lock line missing."""
    _ssd_checkpoint(classroom / "checkpoints")
    at = run_app("pages/predictions.py", ckpt=UPLOAD)
    picker = at.selectbox(key=keys.CHECKPOINT)
    assert list(picker.options) == ["mine.pt"] and picker.value == "mine.pt"
    assert not at.get("file_uploader")
    assert f"{LOCK} uploading checkpoints is off here." in texts(at.caption)
    assert any(c.startswith(f"{LOCK} uploading images is off here") for c in texts(at.caption))
    assert any(f"ckpt={UPLOAD}" in w for w in texts(at.warning))  # the link's value was dropped, and said
    returned, errors = call_handler("pages.ui.models", "checkpoint_picker", state={keys.CHECKPOINT: UPLOAD})
    assert returned == ("mine.pt", classroom / "checkpoints" / "mine.pt") and not errors  # the upload state ignored


def test_sidebar_stays_on_demo_whatever_the_link(classroom: Path, demo_root: Path) -> None:
    """Mutations killed: voc/coco offered read-only, a ?data=voc&voc=<folder> link (or a session
    state) opening a folder inside the data roots."""
    voc = make_voc(classroom / "VOC", {"a": voc_xml("a.jpg", 64, 48, [dict(name="dog", xmin=2, ymin=2, xmax=30,
                                                                              ymax=30)])})  # fmt: skip
    at = run_app("pages/overview.py", data="voc", voc=str(voc))
    assert list(at.radio(key=keys.DATA_KIND).options) == ["demo"]
    spec, _ = at.session_state[keys.SELECTION]
    assert spec == DatasetSpec("demo", str(demo_root))
    assert f"{LOCK} opening other datasets is off here." in texts(at.caption)
    crafted = {keys.DATA_KIND: "voc", keys.VOC_DIR: str(voc)}  # as if the hidden radio had been set
    at = AppTest.from_function(
        _call, default_timeout=APP_TIMEOUT, args=("pages.ui.data", "dataset_sidebar", (), crafted)
    )
    assert not at.run().exception and at.session_state[keys.SELECTION][0] == DatasetSpec("demo", str(demo_root))


def test_a_missing_demo_set_shows_the_command_not_the_button(classroom, tmp_path, monkeypatch) -> None:
    """Mutation killed: "Draw the demo dataset" offered read-only."""
    monkeypatch.setenv("DETVIZ_DEMO_DIR", str(tmp_path / "no-demo"))
    at = run_app("pages/overview.py")
    assert not [b for b in at.button if b.label == "Draw the demo dataset"]
    assert f"{LOCK} drawing the demo dataset is off here." in texts(at.caption)
    assert any("`make demo-data` draws it" in i for i in texts(at.info))
    assert not (tmp_path / "no-demo").exists()


def test_lesson_walkthrough_works_but_trains_nothing(classroom: Path) -> None:
    """Mutations killed: "Train this stage now" shown read-only, the teacher's run hidden with it."""
    run = RunFolder.create(classroom / "runs", TrainConfig(model="largest"), "lesson-largest-20250101-000000")
    run.write_status(state="finished")
    at = run_app("pages/lesson.py", image="000001")
    assert not [b for b in at.button if "Train this stage" in b.label]
    assert f"{LOCK} training from the page is off here; {access.WHERE}." in texts(at.caption)
    assert f"Run {run.path.name}: finished." in texts(at.caption)
    assert [e.label for e in at.expander if "learn" in e.label] == ["Watch this stage learn"]


# --- every handler refuses on its own ------------------------------------------------------------


def _call(module: str, name: str, args: tuple, state: dict) -> None:
    import importlib

    import streamlit as st

    st.session_state.update(state)
    st.session_state["_returned"] = getattr(importlib.import_module(module), name)(*args)


def call_handler(module: str, name: str, *args, state: dict | None = None) -> tuple[object, list[str]]:
    """Calls `module.name(*args)` inside a script run whose session state holds `state` (as a
    crafted request would set it); (its return value, the errors shown)."""
    at = AppTest.from_function(_call, default_timeout=APP_TIMEOUT, args=(module, name, args, state or {})).run()
    assert not at.exception, [e.value for e in at.exception]
    return at.session_state["_returned"], texts(at.error)


def refused(errors: list[str], action: str) -> bool:
    return errors == [f"{action} refused: this server is in classroom mode (read-only); {access.WHERE}."]


def test_the_run_handlers_refuse_and_change_nothing(classroom: Path, demo_root: Path, stand_in) -> None:
    """Mutations killed: the refusal removed from launch_run, cancel_run, delete_run_named or the
    ladder's launch_stage (each would add, signal or remove a run), or its error not shown."""
    root = classroom / "runs"
    done, busy = _runs(root, stand_in)
    before = _on_disk(root)
    config = TrainConfig(data=f"demo:{demo_root}", epochs=1, out=str(root), name="sneaky")
    calls = [
        ("pages.ui.run_actions", "launch_run", (config, 1, False), "Launching a run"),
        ("pages.ui.run_actions", "launch_run", (config, 1, True), "Launching a run"),
        ("pages.ui.run_actions", "cancel_run", (busy.path,), "Cancelling a run"),
        ("pages.ui.run_actions", "delete_run_named", ("done",), "Deleting a run"),
        ("pages.ui.ladder", "launch_stage", (LADDER[0], DatasetSpec("demo", str(demo_root)), "train"),
         "Training this stage"),
    ]  # fmt: skip
    for module, name, args, action in calls:
        returned, errors = call_handler(module, name, *args)
        assert refused(errors, action), (name, errors)
        assert returned is None and _on_disk(root) == before, name
    assert stand_in.poll() is None and busy.state() == "running" and done.exists()


def test_resume_is_hidden_and_refused(classroom: Path) -> None:
    """Mutations killed: Resume shown read-only for a cancelled run, or resume_run without its
    refusal (it would queue the run again and start `python -m detviz.train --resume`)."""
    root = classroom / "runs"
    run = RunFolder.create(root, TrainConfig(epochs=3), "stopped")
    run.write_status(state="cancelled", epoch=1, epochs=3)
    run.checkpoint("last").write_bytes(b"a checkpoint")  # resumable: tests/test_train_designs.py clicks it
    before = _on_disk(root)
    at = run_app("pages/train.py", train_view="Watch", run="stopped")
    assert any(m.startswith("### Run stopped") and "cancelled" in m for m in texts(at.markdown))
    assert not [b for b in at.button if b.label == "Resume"]
    at.session_state[f"{keys.TRAIN_RESUME}stopped"] = True  # the hidden button, pressed by hand
    at.run()
    returned, errors = call_handler("pages.ui.run_actions", "resume_run", run.path)
    assert refused(errors, "Resuming a run") and returned is None
    assert not at.exception and _on_disk(root) == before and run.state() == "cancelled"


def test_the_data_and_upload_handlers_refuse(classroom: Path, demo_root: Path, tmp_path: Path) -> None:
    """Mutations killed: the refusal removed from pick_source (a VOC path opened), _draw_demo
    (files drawn) or save_upload (the bytes written)."""
    from pages.ui.data import SIDEBAR

    voc = make_voc(classroom / "VOC", {"a": voc_xml("a.jpg", 64, 48, [])})
    returned, errors = call_handler("pages.ui.data", "pick_source", "voc", SIDEBAR)
    assert refused(errors, "Opening a voc dataset by path") and returned == DatasetSpec("demo", str(demo_root))
    assert voc.is_dir()
    returned, errors = call_handler("pages.ui.data", "_draw_demo", tmp_path / "drawn")
    assert refused(errors, "Drawing the demo dataset") and not (tmp_path / "drawn").exists()
    data = os.urandom(64)
    returned, errors = call_handler("pages.ui.models", "save_upload", data)
    assert refused(errors, "Uploading a checkpoint") and returned is None and not upload_path(data).exists()


def test_making_split_files_is_hidden_and_refused(classroom: Path) -> None:
    """Mutations killed: the Make-splits button shown read-only (no lock line), the refusal
    removed from its handler make_splits_in (train.txt and val.txt written)."""
    folder = make_voc(classroom / "mine", {i: voc_xml(f"{i}.jpg", 64, 48, []) for i in "abcd"})
    (folder / "ImageSets" / "Main" / "train.txt").unlink()
    at = AppTest.from_function(
        _call, default_timeout=APP_TIMEOUT, args=("pages.ui.data", "_offer_splits", (folder,), {})
    )
    assert not at.run().exception and not [b for b in at.button if "splits" in b.label]
    assert f"{LOCK} making split files is off here." in texts(at.caption)
    returned, errors = call_handler("pages.ui.data", "make_splits_in", folder)
    assert refused(errors, "Making split files") and returned is None
    assert not list((folder / "ImageSets" / "Main").iterdir())

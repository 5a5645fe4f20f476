"""Training what you designed (issue 16): anchors as JSON (the Anchors page's download, --anchors
FILE, the Train form's upload or "from the Anchors page"), the box coding (--coding), both kept in
the checkpoint and used by the Detector; old checkpoints and runs still load; the Train form's
weight decay, warmup and LR-divisor fields; resuming a stopped run from the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quick, run_app, texts
from PIL import Image
from test_live_pages import _download, media_files  # noqa: F401  (a fixture: the download's bytes)

from detviz.anchors import MAX_ANCHORS, PRESETS, AnchorConfig, load_anchor_config, make_anchors
from detviz.inference import Detector
from detviz.losses import ssd_loss
from detviz.models import checkpoint_payload, load_checkpoint, read_checkpoint
from detviz.train import RunFolder, TrainConfig, fit, prepare, resume, resume_problems
from detviz.train.__main__ import build_parser
from detviz.train.__main__ import main as train_main
from detviz.train.runs import atomic_torch_save
from pages.ui import keys

TRAIN, ANCHORS = "pages/train.py", "pages/anchors.py"
# two levels (4x4, 2x2), two shapes per cell: 40 anchors, none of them a preset's
DESIGNED = AnchorConfig(grids=(4, 2), zooms=(1.0,), shapes=((1.0, 1.0), (0.5, 1.0)))
EXPLICIT = AnchorConfig(grids=(2,), level_shapes=(((0.3, 0.3), (0.6, 0.2)),), steps=(0.5,), clip=True)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the JSON file -------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [*PRESETS.values(), DESIGNED, EXPLICIT], ids=[*PRESETS, "designed", "explicit"])
def test_anchor_json_round_trips(config: AnchorConfig, tmp_path: Path) -> None:
    """Mutations killed: to_json dropping level_shapes, steps or clip (the explicit config and
    ssd300 come back different), from_json ignoring a field, the one-line form not parsing."""
    assert AnchorConfig.from_json(config.to_json()) == config
    assert AnchorConfig.from_json(config.to_json(indent=None)) == config and "\n" not in config.to_json(indent=None)
    assert load_anchor_config(write(tmp_path / "a.json", config.to_json())) == config
    data = json.loads(config.to_json())
    assert data["grids"] == list(config.grids) and None not in data.values()  # unset optional fields left out


BAD_JSON = [
    ('{"grids": [4], "ratios": [1]}', "AnchorConfig has no field(s) ['ratios']"),
    ('{"grids": [4], "zooms": [NaN]}', "AnchorConfig.zooms must be positive, got nan"),
    ('{"grids": [4], "zooms": [Infinity]}', "AnchorConfig.zooms must be positive, got inf"),
    ('{"grids": [0]}', "AnchorConfig.grids must be positive integers, got 0"),
    ('{"grids": [10000]}', f"AnchorConfig.grids [10000] with [1] shapes per cell give 100,000,000 anchors; at most {MAX_ANCHORS:,}"),
    ('{"grids": [4], "zooms": [-1]}', "AnchorConfig.zooms must be positive, got -1"),
    ('{"grids": [4], "zooms": [1e30]}', "AnchorConfig.zooms and shapes: anchor shape 0 of level 0 (4x4) is 2.5e+29"),
    ('{"grids": []}', "AnchorConfig.grids is empty"),
    ('{"grids": [4], "shapes": []}', "AnchorConfig.shapes is empty"),
    ('{"grids": [2], "level_shapes": [[]]}', "AnchorConfig.level_shapes has a level without shapes"),
    ('{"zooms": [1]}', "AnchorConfig.grids is missing"),
    ('{"grids": [4], "clip": "yes"}', "AnchorConfig.clip must be true or false"),
    ("[4, 2, 1]", "AnchorConfig as plain data must be a dict of its fields, got list"),
    ("grids: 4", "not a JSON file"),
    ("", "not a JSON file"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_JSON)
def test_bad_anchor_json_names_the_file_and_the_field(text: str, message: str, tmp_path: Path) -> None:
    """Mutations killed: an unknown key, NaN, inf, an absurd grid or zoom, or zero anchors let
    through (or raised as something else than ValueError); the file or the field not named."""
    path = write(tmp_path / "mine.json", text)
    with pytest.raises(ValueError) as error:
        load_anchor_config(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)
    with pytest.raises(ValueError, match=f"^--anchors {path}: "):
        TrainConfig(anchors=str(path)).validate()
    with pytest.raises(ValueError, match="cannot read the anchors file"):
        load_anchor_config(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--anchors", "{bad}"], "--anchors the anchors JSON: not a JSON file"),
        (["--anchors", "WRITE"], "mine.json: AnchorConfig has no field(s) ['ratios']"),
        (["--anchors", "missing.json"], "missing.json: cannot read the anchors file"),
        (["--anchors", "lesson4x4"], "--anchors must be one of lesson_4x4, lesson_multiscale, ssd300"),
        (["--model", "ssd", "--anchors", "DESIGNED"], "--model ssd predicts on one grid; --anchors designed.json has several"),
        (["--anchors", '{"grids": [64]}'], "an anchor grid of 64x64 needs a larger image"),
        (["--coding", "sideways"], "--coding must be one of tanh, variance, got 'sideways'"),
    ],
)  # fmt: skip
def test_bad_anchors_and_coding_on_the_cli_are_one_line(
    tiny: Path, tmp_path: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    """Mutations killed: the model kind check skipped for JSON anchors, the grid-against-image
    check left to the model build (a run folder made, then failed), --coding not validated."""
    bad = write(tmp_path / "mine.json", '{"grids": [4], "ratios": [1]}')
    designed = write(tmp_path / "designed.json", DESIGNED.to_json())
    flags = [{"WRITE": str(bad), "DESIGNED": str(designed)}.get(f, f) for f in flags]
    flags = [str(tmp_path / f) if f == "missing.json" else f for f in flags]
    out = tmp_path / "runs"
    code = train_main(["--data", f"demo:{tiny}", "--image-size", "128", "--out", str(out), "--name", "bad", *flags])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(error) == 1 and message in error[0], error
    assert not (out / "bad").exists()


def test_the_cli_parses_anchors_and_coding_into_the_config(tmp_path: Path) -> None:
    """Mutation killed: --coding missing from the CLI (built from the dataclass's fields)."""
    path = write(tmp_path / "a.json", DESIGNED.to_json())
    args = build_parser().parse_args(["--anchors", str(path), "--coding", "variance"])
    config = TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__})
    assert config.coding == "variance" and config.anchor_config() == DESIGNED


def test_a_run_folder_keeps_the_anchors_not_the_file(tiny: Path, tmp_path: Path) -> None:
    """Mutation killed: config.json holding the path, so that a resumed run trains on whatever
    the file holds by then (or fails when it is gone)."""
    path = write(tmp_path / "a.json", DESIGNED.to_json())
    run = RunFolder.create(tmp_path / "runs", quick(tiny, tmp_path, anchors=str(path)), "kept")
    path.unlink()
    stored = json.loads(run.config_path.read_text())["anchors"]
    assert stored.startswith("{") and AnchorConfig.from_json(stored) == DESIGNED
    assert run.config().anchor_config() == DESIGNED
    preset = quick(tiny, tmp_path, anchors="ssd300", model="largest")
    assert preset.with_inline_anchors() is preset  # presets and non-SSD kinds stay as they are


# --- training with them -----------------------------------------------------------------------------


def test_training_loss_encodes_with_the_configs_coding(tiny: Path, tmp_path: Path) -> None:
    """Mutation killed: SSDTask.loss not passing the coding to ssd_loss (tanh whatever the config)."""
    s = prepare(quick(tiny, tmp_path, anchors=DESIGNED.to_json(), coding="variance", image_size=64))
    batch = next(iter(s.train_loader))
    with torch.no_grad():
        outputs = s.model(batch.images)
    parts = s.task.loss(outputs, batch)
    args = (*outputs, batch.boxes, batch.labels, batch.valid & ~batch.difficult, make_anchors(DESIGNED))
    for coding, same in (("variance", True), ("tanh", False)):
        expected = ssd_loss(*args, classification="focal", coding=coding)["loss_box"]
        assert torch.isclose(parts["loss_box"], expected).item() is same, coding


def test_train_with_json_anchors_and_variance_coding(tiny: Path, tmp_path: Path) -> None:
    """Mutations killed: the checkpoint keeping a preset's anchors or tanh coding instead of the
    designed ones, the Detector building anchors or coding from anything but the checkpoint."""
    path = write(tmp_path / "designed.json", DESIGNED.to_json())
    config = quick(tiny, tmp_path, anchors=str(path), coding="variance", image_size=64, epochs=1, max_steps=1)
    run = RunFolder.create(config.out, config, "designed")
    fit(run.config(), run)
    payload = read_checkpoint(run.checkpoint("last"))
    assert AnchorConfig.from_dict(payload["model"]["anchors"]) == DESIGNED
    assert payload["model"]["coding"] == "variance" and payload["training"]["coding"] == "variance"
    detector = Detector.from_checkpoint(run.checkpoint("best"))
    assert len(detector.anchors) == DESIGNED.num_anchors == 40 and detector.coding == "variance"
    torch.testing.assert_close(detector.anchors.boxes, make_anchors(DESIGNED).boxes)
    image = Image.open(next((tiny / "JPEGImages").iterdir()))
    logits, activations = detector.raw_outputs([image])
    assert logits.shape[1] == activations.shape[1] == 40


def test_checkpoints_and_runs_from_before_still_load(tmp_path: Path) -> None:
    """Mutations killed: `coding` required in a checkpoint's model or in a run's config.json;
    a shipped checkpoint's anchors not those of its preset."""
    shipped = sorted(Path("checkpoints").glob("*.pt"))
    assert shipped, "the shipped checkpoints"
    for path in shipped:
        payload = read_checkpoint(path)
        if payload["model"]["kind"] not in ("ssd", "ssd-multiscale"):
            load_checkpoint(path)
            continue
        detector = Detector.from_checkpoint(path)
        preset = PRESETS[payload["training"]["anchors"]]
        assert detector.coding == "tanh" and len(detector.anchors) == preset.num_anchors, path.name
        torch.testing.assert_close(detector.anchors.boxes, make_anchors(preset).boxes)
    model, info = load_checkpoint(shipped[0])
    old = checkpoint_payload(model, info.model)
    del old["model"]["coding"]  # written before the model config had a coding
    atomic_torch_save(old, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[1].model.coding == "tanh"
    run = RunFolder.create(tmp_path / "runs", TrainConfig(), "old")
    data = json.loads(run.config_path.read_text())
    del data["coding"]
    run.config_path.write_text(json.dumps(data))
    assert run.config().coding == "tanh"


# --- resuming from the page ----------------------------------------------------------------------


def _stopped(root: Path, name: str, state: str = "cancelled", last: bool = True) -> RunFolder:
    run = RunFolder.create(root, TrainConfig(epochs=3), name)
    run.write_status(state=state, epoch=1, epochs=3)
    if last:
        run.checkpoint("last").write_bytes(b"a checkpoint")
    return run


def test_resume_problems_name_what_cannot_be_resumed(tmp_path: Path) -> None:
    """Mutations killed: a finished, running or finder run, or one without last.pt, offered."""
    root = tmp_path / "runs"
    assert resume_problems(_stopped(root, "cancelled").path) == []
    assert resume_problems(_stopped(root, "failed", "failed").path) == []
    assert "only a cancelled or failed run" in resume_problems(_stopped(root, "done", "finished").path)[0]
    assert "no checkpoints/last.pt" in resume_problems(_stopped(root, "early", last=False).path)[0]
    finder = _stopped(root, "finder")
    finder.write_status(kind="lr_find")
    assert "learning-rate finder" in resume_problems(finder.path)[0]
    assert "not a run folder" in resume_problems(root / "nothing")[0]
    with pytest.raises(ValueError, match="only a cancelled or failed run"):
        resume(root / "done")


class FakeProcess:
    """What subprocess.Popen returns, for a launch that must not start anything."""

    def __init__(self, command: list[str], **_: object) -> None:
        self.pid = os.getpid()  # alive: the run shows as queued
        STARTED.append(command)


STARTED: list[list[str]] = []


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands launch() and resume() would start, instead of starting them."""
    STARTED.clear()
    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    return STARTED


def test_the_resume_button_starts_the_cli_resume(data_root: Path, no_processes: list) -> None:
    """Mutations killed: Resume missing for a cancelled run, shown for a finished one, starting
    anything but `python -m detviz.train --resume <folder>`, or leaving the run's state."""
    root = data_root / "runs"
    stopped, done = _stopped(root, "stopped"), _stopped(root, "done", "finished")
    at = run_app(TRAIN, train_view="Watch", run="done")
    assert not [b for b in at.button if b.label == "Resume"]
    at = run_app(TRAIN, train_view="Watch", run="stopped")
    next(b for b in at.button if b.label == "Resume").click().run()
    assert not at.exception and no_processes == [[sys.executable, "-m", "detviz.train", "--resume", str(stopped.path)]]
    status = stopped.read_status()
    assert status.state == "queued" and status.pid == os.getpid() and stopped.state() == "queued"
    assert at.session_state[keys.RUN] == "stopped" and any("stopped resumed as process" in s for s in texts(at.success))
    assert done.read_status().state == "finished"


# --- the Anchors page and the Train form ------------------------------------------------------------


def test_the_anchors_page_downloads_its_config_as_json(data_root: Path, media_files) -> None:  # noqa: F811
    """Mutations killed: the download holding another config (the preset instead of the custom
    grid), or JSON that does not parse back."""
    at = run_app(ANCHORS, preset="custom", grids="3, 1", zooms="1, 2", shapes="1x1, 0.5x1")
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Download these anchors as JSON"]
    expected = AnchorConfig(grids=(3, 1), zooms=(1.0, 2.0), shapes=((1.0, 1.0), (0.5, 1.0)))
    assert AnchorConfig.from_json(_download(media_files, button)) == expected
    assert at.session_state[keys.DESIGNED_ANCHORS] == ("custom", expected.to_dict())


def _shown_config(at) -> TrainConfig:
    """The TrainConfig the form's command line says (parsed back as the CLI would)."""
    import shlex

    args = build_parser().parse_args(shlex.split(at.code[0].value)[3:])
    return TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__})


def test_the_form_trains_the_anchors_page_design_and_its_new_fields(data_root: Path, no_processes: list) -> None:
    """Mutations killed: 'from the Anchors page' not reading the page's config, coding, weight
    decay, warmup or LR divisors not reaching the TrainConfig (the command and the run's
    config.json), bad divisors not blocking the launch."""
    at = run_app(ANCHORS, preset="custom", grids="3, 1", zooms="1", shapes="1x1")
    at.switch_page(TRAIN).run()
    at.number_input(key="train_batch").set_value(4)
    at.selectbox(key="train_anchors").set_value("from the Anchors page")
    at.radio(key="train_coding").set_value("variance")
    at.number_input(key="train_wd").set_value(0.05)
    at.number_input(key="train_warmup").set_value(0.1)
    at.text_input(key="train_lr_div").set_value("10, 5, 1").run()
    assert not at.error, texts(at.error)
    shown = _shown_config(at)
    assert shown.anchor_config() == AnchorConfig(grids=(3, 1)) and shown.coding == "variance"
    assert (shown.weight_decay, shown.warmup, shown.lr_divisors) == (0.05, 0.1, (10.0, 5.0, 1.0))
    next(b for b in at.button if b.label == "Launch").click().run()
    (command,) = no_processes
    assert command[1:4] == ["-m", "detviz.train", "--run-dir"]
    stored = RunFolder(command[4]).config()
    assert stored == shown  # the launched run's config.json is the command's config

    at = run_app(TRAIN, train_batch="4", train_lr_div="10, fast")
    assert any("LR divisors: expected numbers" in e for e in texts(at.error))
    assert next(b for b in at.button if b.label == "Launch").disabled
    at.text_input(key="train_lr_div").set_value("10, 1").run()
    assert any("--lr-divisors takes three positive numbers" in e for e in texts(at.error))


def test_the_form_takes_an_uploaded_anchors_file(data_root: Path) -> None:
    """Mutations killed: the upload ignored (the default anchors trained), a bad file not shown
    as the reason the launch is blocked, no upload not blocking it."""
    at = run_app(TRAIN, train_batch="4", train_anchors="from a JSON file")
    assert any("upload the file" in e for e in texts(at.error))
    at.file_uploader(key=keys.TRAIN_ANCHORS_FILE).upload("designed.json", DESIGNED.to_json().encode()).run()
    assert not at.error, texts(at.error)
    assert _shown_config(at).anchor_config() == DESIGNED
    assert any("designed.json: 40 anchors on grids 4, 2" in c for c in texts(at.caption))
    at.file_uploader(key=keys.TRAIN_ANCHORS_FILE).upload("bad.json", b'{"grids": [4], "zooms": [NaN]}').run()
    assert any("bad.json: AnchorConfig.zooms must be positive, got nan" in e for e in texts(at.error))
    assert next(b for b in at.button if b.label == "Launch").disabled

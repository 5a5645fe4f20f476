"""Epoch snapshots (detviz.train.snapshots): recorded once per epoch for every model kind and equal
to what the epoch's checkpoint predicts, dropped for the epochs a resume runs again, read back
tolerantly (torn, corrupt and missing files), and drawn (detviz.figures.snapshot_figure)."""

from __future__ import annotations

import json
from pathlib import Path

import plotly.io
import pytest
import torch
from conftest import quick
from PIL import Image

from detviz.data import load_image
from detviz.data.spec import open_dataset
from detviz.figures import snapshot_figure
from detviz.inference import Detector, LargestObjectPredictor, MultiLabelPredictor, load_predictor
from detviz.postprocess import DEFAULT_NMS_IOU
from detviz.train import RunFolder, TrainingError, engine, fit
from detviz.train import snapshots as snap
from detviz.train.__main__ import main as train_main
from detviz.train.snapshots import (
    EpochSnapshot,
    ImageSnapshot,
    SnapshotError,
    append_line,
    read_snapshots,
    snapshot_path,
    snapshot_positions,
)

TOLERANCE = 2e-4  # numbers are stored with 4 decimals


def raw_epochs(run_path: Path) -> list[int]:
    """The epoch of every line of the file, duplicates included (read_snapshots keeps one)."""
    return [json.loads(line)["epoch"] for line in snapshot_path(run_path).read_text().splitlines()]


# --- recording ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ssd", "ssd-multiscale", "largest", "multilabel"])
def test_one_snapshot_per_epoch_equal_to_the_checkpoint_predictions(
    tiny: Path, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills: a snapshot of other weights than the epoch's last.pt, the wrong images, a missed or
    doubled epoch, the wrong box coding / activation (boxes differ from last.pt's
    Detector), and a kind whose predictions are not recorded."""
    monkeypatch.setattr(snap, "SCORE_THRESHOLD", 0.02)  # a two-epoch model's scores are low: record some
    config = quick(tiny, tmp_path, model=kind, image_size=64, name=kind, dropout=0.5)
    run = RunFolder.create(config.out, config, config.name)
    fit(config, run)
    assert raw_epochs(run.path) == [0, 1]
    snapshots = read_snapshots(run.path)
    val = open_dataset(f"demo:{tiny}", "val")
    ids = [val.image_ids[p] for p in snapshot_positions(len(val))]
    assert all(s.image_ids == ids and s.kind == kind and s.role == "val" for s in snapshots)
    assert [s.step for s in snapshots] == [2, 4] and snapshots[-1].split == "val"

    last = snapshots[-1]
    records = [val[val.position_of(i)] for i in ids]
    images = [load_image(r.image_path) for r in records]
    predictor = load_predictor(run.checkpoint("last"))
    sizes = [torch.tensor([r.width, r.height] * 2, dtype=torch.float32) for r in records]
    if isinstance(predictor, Detector):
        found = predictor.detect(images, snap.SCORE_THRESHOLD, DEFAULT_NMS_IOU, snap.MAX_DETECTIONS)
        assert sum(len(d) for d in found) > 0
        for d, s, size in zip(found, last.images, sizes, strict=True):
            assert torch.equal(d.labels, s.labels)
            assert torch.allclose(d.scores, s.scores, atol=TOLERANCE)
            assert torch.allclose(d.boxes / size, s.boxes, atol=TOLERANCE)
    elif isinstance(predictor, LargestObjectPredictor):
        for p, s, size in zip(predictor.predict(images), last.images, sizes, strict=True):
            assert [p.label] == s.labels.tolist() and abs(p.score - float(s.scores[0])) < TOLERANCE
            assert torch.allclose(p.box / size, s.boxes[0], atol=TOLERANCE)
    else:
        assert isinstance(predictor, MultiLabelPredictor)
        for p, s in zip(predictor.predict(images), last.images, strict=True):
            assert s.probabilities is not None and torch.allclose(p, s.probabilities, atol=TOLERANCE)
    assert snapshot_path(run.path).stat().st_size < 8_000  # a few KB per epoch


def test_without_validation_the_first_training_images_are_recorded(tiny: Path, tmp_path: Path) -> None:
    """Kills: no snapshot without a validation split, one that does not say its images are
    training images (a page would look for them in the wrong split), and one taken in train mode
    (no validation put the model in eval mode first: dropout would change the predictions)."""
    config = quick(tiny, tmp_path, model="largest", image_size=64, epochs=1, val_split="", name="noval", dropout=0.5)
    run = RunFolder.create(config.out, config, config.name)
    fit(config, run)
    (only,) = read_snapshots(run.path)
    train = open_dataset(f"demo:{tiny}", "train")
    assert only.role == "train" and only.split == "train"
    assert only.image_ids == [train.image_ids[p] for p in snapshot_positions(len(train))]
    records = [train[train.position_of(i)] for i in only.image_ids]
    predicted = load_predictor(run.checkpoint("last")).predict([load_image(r.image_path) for r in records])
    assert [p.label for p in predicted] == [int(s.labels[0]) for s in only.images]
    assert [p.score for p in predicted] == pytest.approx([float(s.scores[0]) for s in only.images], abs=TOLERANCE)


def test_a_resume_drops_the_snapshots_of_the_epochs_it_runs_again(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies between an epoch's snapshot and its last.pt (here: the write fails): the
    resume runs that epoch again. Kills: no drop on resume (epoch 1 twice in the file), a drop
    that loses the epochs before (epoch 0 gone), and a torn line left to spoil the next append."""
    real_save = engine._save
    failed = []

    def save(run, s, optimizer, scaler, progress, lr, epochs_done, complete, which="last"):
        if epochs_done == 2 and which == "last" and not failed:
            failed.append(epochs_done)
            raise OSError(28, "No space left on device")
        return real_save(run, s, optimizer, scaler, progress, lr, epochs_done, complete, which)

    monkeypatch.setattr(engine, "_save", save)
    config = quick(tiny, tmp_path, image_size=64, model="ssd", name="resumed")
    run = RunFolder.create(config.out, config, config.name)
    with pytest.raises(TrainingError, match="could not write the run folder"):
        fit(config, run)
    assert raw_epochs(run.path) == [0, 1]  # epoch 1's snapshot, but last.pt still says epoch 0
    with open(snapshot_path(run.path), "a") as f:
        f.write('{"epoch": 1, "step": 4, "ki')  # and a line torn by the kill
    assert train_main(["--resume", str(run.path)]) == 0
    assert raw_epochs(run.path) == [0, 1]
    assert [s.epoch for s in read_snapshots(run.path)] == [0, 1]


class Constant(torch.nn.Module):
    """A multi-label "model" that answers `value` for 3 classes, with a dropout to show its mode."""

    def __init__(self, value: float):
        super().__init__()
        self.value, self.dropout = value, torch.nn.Dropout(0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.full((images.shape[0], 3), self.value))


def test_a_recorder_keeps_the_mode_and_skips_diverged_outputs(tmp_path: Path) -> None:
    """Kills: a recorder that leaves the model in eval mode for the next epoch's training, and one
    that fails the run (or writes NaN) on diverged weights before the loss check can say why."""
    recorder = snap.SnapshotRecorder(snapshot_path(tmp_path), "multilabel", "val", "demo", "val", ["a", "b"],
                                     torch.zeros(2, 3, 8, 8))  # fmt: skip
    model = Constant(1.0).train()
    recorded = recorder.record(model, 0, 5)
    assert model.training and recorded is not None
    assert recorded.images[0].probabilities.tolist() == pytest.approx([0.7311] * 3)  # sigmoid(1): eval mode, no dropout
    assert recorder.record(Constant(float("nan")).eval(), 1, 10) is None
    assert [s.epoch for s in read_snapshots(tmp_path)] == [0]


# --- reading -------------------------------------------------------------------------------------


def snapshot(epoch: int, kind: str = "ssd", ids: tuple[str, ...] = ("a", "b")) -> EpochSnapshot:
    """A hand-made snapshot: image k has k + 1 detections (or, by kind, a box or probabilities)."""
    images = []
    for k, image_id in enumerate(ids):
        n = 1 if kind == "largest" else 0 if kind == "multilabel" else k + 1
        boxes = torch.tensor([[0.1, 0.2, 0.3 + 0.1 * j, 0.4 + 0.05 * epoch] for j in range(n)]).reshape(n, 4)
        probabilities = torch.tensor([0.25, 0.75, 0.5 + 0.01 * epoch]) if kind == "multilabel" else None
        images.append(ImageSnapshot(image_id, boxes, torch.linspace(0.9, 0.5, n), torch.arange(n) % 3, probabilities))
    return EpochSnapshot(epoch, 10 * (epoch + 1), kind, "val", "demo", "val", tuple(images))


@pytest.mark.parametrize("kind", ["ssd", "ssd-multiscale", "largest", "multilabel"])
def test_to_json_and_back_keeps_every_number(kind: str) -> None:
    """Kills: a field lost or renamed between writer and reader, boxes in another order."""
    original = snapshot(2, kind)
    back = EpochSnapshot.from_json(json.loads(original.to_json()))
    assert (back.epoch, back.step, back.kind, back.role, back.data, back.split) == (2, 30, kind, "val", "demo", "val")
    for a, b in zip(original.images, back.images, strict=True):
        assert a.image_id == b.image_id and torch.equal(a.labels, b.labels)
        assert torch.allclose(a.boxes, b.boxes, atol=1e-4) and torch.allclose(a.scores, b.scores, atol=1e-4)
        assert (a.probabilities is None) == (b.probabilities is None)
        if a.probabilities is not None:
            assert torch.allclose(a.probabilities, b.probabilities, atol=1e-4)


def test_missing_torn_and_corrupt_lines_are_skipped(tmp_path: Path) -> None:
    """Kills: a reader that raises on a bad line, keeps a torn one, or forgets the later lines."""
    assert read_snapshots(tmp_path) == []  # a run from before snapshots
    path = snapshot_path(tmp_path)
    bad = [
        "not json",
        json.dumps({"epoch": 5}),
        json.dumps(json.loads(snapshot(6).to_json()) | {"kind": "yolo"}),
        json.dumps(json.loads(snapshot(7).to_json()) | {"images": ["a"]}),  # two predictions, one id
        snapshot(8).to_json().replace("[0.1,0.2,0.3,", "[0.1,0.2,"),  # a box of three numbers
        json.dumps(json.loads(snapshot(9).to_json()) | {"epoch": -1}),
        "[1, 2, 3]",
    ]
    path.write_text("\n".join([snapshot(0).to_json(), *bad, snapshot(1).to_json(), ""]))
    with open(path, "a") as f:
        f.write(snapshot(2).to_json()[:40])  # torn: the writer was killed
    assert [s.epoch for s in read_snapshots(tmp_path)] == [0, 1]
    append_line(path, snapshot(2).to_json())  # the next line starts on a line of its own
    assert [s.epoch for s in read_snapshots(tmp_path)] == [0, 1, 2]
    append_line(path, snapshot(1, ids=("c",)).to_json())  # an epoch written twice: the last wins
    assert [s.image_ids for s in read_snapshots(tmp_path)] == [["a", "b"], ["c"], ["a", "b"]]


def test_a_file_of_nothing_but_garbage_is_a_typed_error(tmp_path: Path) -> None:
    """Kills: a garbage file shown as "no snapshots yet", and a half-written first line taken for
    garbage (the first epoch's line being written)."""
    path = snapshot_path(tmp_path)
    path.write_text('{"epoch": 0, "st')  # the first line, being written
    assert read_snapshots(tmp_path) == []
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00garbage\n")
    with pytest.raises(SnapshotError, match="none of its 3 lines is an epoch snapshot"):
        read_snapshots(tmp_path)
    path.unlink()
    path.mkdir()  # not a file at all
    with pytest.raises(SnapshotError, match="cannot be read"):
        read_snapshots(tmp_path)


def test_snapshot_positions_are_evenly_spaced_and_start_at_the_first() -> None:
    """Kills: repeated images, a count above the request, images missing when there are few."""
    assert snapshot_positions(200) == [0, 33, 66, 100, 133, 166]
    assert snapshot_positions(7) == [0, 1, 2, 3, 4, 5] and snapshot_positions(4) == [0, 1, 2, 3]
    assert snapshot_positions(0) == []


# --- the figure -----------------------------------------------------------------------------------


def traces(fig, name: str) -> list:
    return [t for t in fig.data if t.name == name]


def test_figure_draws_the_detections_in_pixels_over_the_ground_truth() -> None:
    """Kills: boxes left normalized or scaled by the wrong side, ground truth drawn like a
    detection, tags without the score, a title that miscounts."""
    image = Image.new("RGB", (200, 100))
    s = snapshot(1).images[1]  # two detections, classes 0 and 1
    gt = torch.tensor([[10.0, 20.0, 60.0, 80.0]])
    fig = snapshot_figure(image, s, ["cat", "dog", "cow"], "ssd", 1, gt, torch.tensor([2]))
    assert fig.layout.title.text == "Epoch 2: 2 detections"
    (truth,) = traces(fig, "ground truth")
    assert truth.line.dash == "dash" and list(truth.x[:4]) == [10, 60, 60, 10]
    (cat,) = traces(fig, "cat")
    x1, y1, x2, y2 = (s.boxes[0] * torch.tensor([200, 100, 200, 100])).tolist()
    assert list(cat.x[:4]) == pytest.approx([x1, x2, x2, x1]) and list(cat.y[:4]) == pytest.approx([y1, y1, y2, y2])
    assert [a.text for a in fig.layout.annotations] == ["cat 0.90", "dog 0.50"]
    empty = ImageSnapshot("x", torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    fig = snapshot_figure(image, empty, ["cat"], "ssd", 0)
    assert fig.layout.title.text == "Epoch 1: no detection" and not fig.layout.annotations
    json.loads(plotly.io.to_json(fig))  # serializable as the page sends it


def test_figure_of_the_largest_object_and_of_class_probabilities() -> None:
    """Kills: the largest object's class or score left out of its title, probabilities drawn in
    another class order, the truth marked on the wrong classes, a miscounted "right"."""
    image = Image.new("RGB", (100, 100))
    largest = snapshot(0, "largest").images[0]
    fig = snapshot_figure(image, largest, ["cat", "dog", "cow"], "largest", 0)
    assert fig.layout.title.text == "Epoch 1: largest object cat 0.90" and len(traces(fig, "cat")) == 1
    probabilities = snapshot(3, "multilabel").images[0]  # 0.25, 0.75, 0.53
    fig = snapshot_figure(image, probabilities, ["cat", "dog", "cow"], "multilabel", 3, None, torch.tensor([0, 0]))
    (bars,) = traces(fig, "probability")
    assert list(bars.x) == ["cat", "dog", "cow"] and list(bars.y) == pytest.approx([0.25, 0.75, 0.53])
    (truth,) = traces(fig, "in the image (ground truth)")
    assert list(truth.x) == ["cat"]
    assert fig.layout.title.text == "Epoch 4: 0 of 3 classes right"  # says dog and cow (> 0.5); only cat is there
    fig = snapshot_figure(image, probabilities, ["cat", "dog", "cow"], "multilabel", 3, None, torch.tensor([1]))
    assert fig.layout.title.text == "Epoch 4: 2 of 3 classes right"  # dog right, cat right (absent), cow wrong

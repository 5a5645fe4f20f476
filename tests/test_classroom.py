"""Classroom defaults of issue 14 outside the walkthrough: the Losses page opens on a focal-trained
model and its caption's numbers (anchor count, the easy negatives' share of each loss) are that
model's, checked against a computation from the raw outputs that does not go through the page's
code (ssd_loss_details / loss_breakdown)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import run_app
from conftest import texts as _texts
from PIL import Image

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES, read_voc
from detviz.inference import Detector
from detviz.losses import ssd_loss
from detviz.matching import DEFAULT_IOU_THRESHOLD, match_anchors
from detviz.models import ModelConfig, build_model, checkpoint_payload
from pages.ui import keys

LOSSES = "pages/losses.py"
IMAGE = "000002"
ALPHA, GAMMA = 0.25, 2.0  # the page's slider defaults
EASY = 0.9  # detviz.losses.EASY_P_T, spelled out: the test must not take the page's definition


def _checkpoint(folder: Path, name: str, preset: str, loss: str, seed: int) -> Path:
    """A small untrained detector on `preset`'s anchors whose training metadata says `loss`."""
    config = ModelConfig(class_names=tuple(DEMO_CLASS_NAMES), image_size=96, anchors=PRESETS[preset].to_dict(),
                         head_channels=32, class_bias=-3.0)  # fmt: skip
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(build_model(config), config, training={"loss": loss}), folder / name)
    return folder / name


def _caption(at) -> str:
    (text,) = [c for c in _texts(at.caption) if "easy negatives make" in c]
    return text


def _easy_shares(path: Path, demo_root: Path) -> tuple[int, float, float]:
    """(anchors, easy negatives' share of the BCE loss, of the focal loss) of the checkpoint on
    IMAGE, from the raw outputs: per element softplus (BCE of a 0 target) and its focal weight
    (1 - alpha) p^gamma, over the training path's total (ssd_loss)."""
    record = next(r for r in read_voc(demo_root, "train") if r.image_id == IMAGE)
    image = Image.open(record.image_path).convert("RGB")
    detector = Detector.from_checkpoint(path)
    logits, activations = detector.raw_outputs([image])
    w, h = image.size
    gt = record.boxes / torch.tensor([w, h, w, h])
    c = len(DEMO_CLASS_NAMES)
    real = logits[0, :, :c]  # (A, C): the loss ignores the background column
    p = torch.sigmoid(real)
    positive = match_anchors(gt, detector.anchors.boxes, DEFAULT_IOU_THRESHOLD).positive
    easy = ~positive & (1 - p.max(dim=1).values > EASY)
    bce_easy = F.softplus(real[easy]).sum() / c
    focal_easy = ((1 - ALPHA) * p[easy] ** GAMMA * F.softplus(real[easy])).sum() / c
    args = (gt[None], record.labels[None], torch.ones(1, len(gt), dtype=torch.bool), detector.anchors)
    totals = {
        kind: float(ssd_loss(logits, activations, *args, classification=kind, coding=detector.coding)["loss"])
        for kind in ("bce", "focal")
    }
    return len(detector.anchors), float(bce_easy) / totals["bce"], float(focal_easy) / totals["focal"]


def _shown(caption: str) -> tuple[int, float, float]:
    anchors = re.search(r"of its ([\d,]+) anchors", caption)
    shares = re.search(r"make ([\d.]+)% of the BCE loss and ([\d.]+)% of the focal loss", caption)
    assert anchors and shares, caption
    return int(anchors.group(1).replace(",", "")), float(shares.group(1)) / 100, float(shares.group(2)) / 100


def test_losses_page_defaults_to_the_focal_model_and_its_numbers(data_root: Path, demo_root: Path) -> None:
    """Kills: the default left at the first checkpoint alphabetically (demo_bce.pt); the caption's
    anchor count or shares taken from another model, or hard-coded; BCE and focal shares swapped."""
    folder = data_root / "checkpoints"
    _checkpoint(folder, "demo_bce.pt", "lesson_multiscale", "bce", seed=0)
    focal = _checkpoint(folder, "demo_focal.pt", "lesson_4x4", "focal", seed=1)
    at = run_app(LOSSES, split="train", image=IMAGE)
    assert at.selectbox(key=keys.CHECKPOINT).value == "demo_focal.pt"
    caption = _caption(at)
    assert caption.startswith("demo_focal.pt (trained with focal)")
    anchors, bce_share, focal_share = _shown(caption)
    expected = _easy_shares(focal, demo_root)
    assert anchors == expected[0] == 16  # the 4x4 model's, not demo_bce.pt's 189
    assert {m.label: m.value for m in at.metric}["Anchors"] == "16"
    assert bce_share == pytest.approx(expected[1], abs=0.0006) and focal_share == pytest.approx(expected[2], abs=0.0006)
    assert bce_share > focal_share  # focal loss turns the easy negatives down


def test_losses_page_prefers_the_lessons_focal_model_and_follows_the_choice(data_root: Path, demo_root: Path) -> None:
    """Kills: the preference order reversed (demo_focal.pt before lesson_multiscale_focal.pt); a
    classifier checkpoint offered on the page; the caption not following a changed choice."""
    folder = data_root / "checkpoints"
    bce = _checkpoint(folder, "demo_bce.pt", "lesson_4x4", "bce", seed=0)
    _checkpoint(folder, "demo_focal.pt", "lesson_4x4", "focal", seed=1)
    _checkpoint(folder, "lesson_multiscale_focal.pt", "lesson_multiscale", "focal", seed=2)
    classifier = ModelConfig(kind="multilabel", class_names=tuple(DEMO_CLASS_NAMES), image_size=96)
    torch.save(checkpoint_payload(build_model(classifier), classifier), folder / "lesson_multilabel.pt")
    at = run_app(LOSSES, split="train", image=IMAGE)
    picker = at.selectbox(key=keys.CHECKPOINT)
    assert picker.value == "lesson_multiscale_focal.pt" and "lesson_multilabel.pt" not in picker.options
    assert _shown(_caption(at))[0] == 189
    picker.set_value("demo_bce.pt").run()
    caption = _caption(at)
    assert not at.exception and caption.startswith("demo_bce.pt (trained with bce)")
    assert "Trained with BCE, a model pushes" in caption
    anchors, bce_share, focal_share = _shown(caption)
    expected = _easy_shares(bce, demo_root)
    assert anchors == expected[0] == 16
    assert bce_share == pytest.approx(expected[1], abs=0.0006) and focal_share == pytest.approx(expected[2], abs=0.0006)

"""Figures leave the app (issue 16): `python -m detviz.figures export` writes a page's figures as
HTML, and every figure on the teaching pages has its HTML button next to the PNG camera."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_app

from detviz.data import read_voc
from detviz.evaluate import detect_dataset, voc_map
from detviz.figures.__main__ import main
from detviz.figures.report import OTHER_GAMMAS
from detviz.inference import Detector
from pages.ui import keys

SHIPPED = ROOT / "checkpoints" / "demo_focal.pt"
LIMIT = 4


def _traces(html_file: Path) -> list[dict]:
    """The traces of the figure in a plotly HTML file, parsed from its Plotly.newPlot call."""
    html = html_file.read_text()
    call = re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*', html)
    assert call, f"{html_file.name} holds no plotly figure"
    traces, _ = json.JSONDecoder().raw_decode(html, call.end())
    return traces


def _array(value) -> np.ndarray:
    """A plotly JSON array: a list, or the typed-array form {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict):
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.asarray(value, dtype=np.float64)


def _export(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = main(["export", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_export_holds_the_pr_curves_and_the_surface_of_the_evaluate_cli(
    demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Kills: a figure missing from the report; PR curves for other classes than those with
    detections and objects; the surface computed at other thresholds or with another AP definition
    than the headline's (checked against `detect_dataset` + `voc_map`, the evaluate CLI's path); PNG
    claimed without kaleido."""
    code, out, _ = _export(capsys, "--page", "evaluate", "--checkpoint", SHIPPED, "--data", f"demo:{demo_root}",
                           "--split", "val", "--limit", LIMIT, "--out", tmp_path)  # fmt: skip
    assert code == 0
    names = {"ap-per-class", "pr-per-class", "confusion", "error-breakdown", "threshold-surface"}
    assert {p.name for p in tmp_path.iterdir()} >= {f"{n}.html" for n in names}
    assert "PNG skipped: kaleido is not installed" in out or "PNG files written" in out

    index = read_voc(demo_root, "val").subset(list(range(LIMIT)))
    detector = Detector.from_checkpoint(SHIPPED)
    result = voc_map(detect_dataset(detector, index, 0.01, 0.45, 100), index, index.num_classes, 0.5, "all")
    with_curves = [c for c, curve in zip(index.classes, result.curves, strict=True)
                   if curve.recall.numel() and not bool(curve.recall.isnan().all())]  # fmt: skip
    assert [t["name"] for t in _traces(tmp_path / "pr-per-class.html")] == with_curves

    heatmap, best = _traces(tmp_path / "threshold-surface.html")
    assert best["name"] == "best" and heatmap["type"] == "heatmap"
    cell = _array(heatmap["z"])[heatmap["y"].index("0.01"), heatmap["x"].index("0.45")]
    assert math.isclose(cell, result.map, abs_tol=1e-6)


def test_losses_and_anchors_exports(demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Kills: the losses page's curves or maps left out or built with other alpha/gamma; the anchors
    export ignoring the checkpoint's anchors (demo_focal.pt: SSD300's six levels)."""
    data = ("--data", f"demo:{demo_root}", "--split", "val", "--limit", LIMIT)
    code, _, _ = _export(capsys, "--page", "losses", "--checkpoint", SHIPPED, *data, "--alpha", 0.5, "--gamma", 1,
                         "--out", tmp_path / "losses")  # fmt: skip
    assert code == 0
    curves = [t["name"] for t in _traces(tmp_path / "losses" / "loss-curves.html")]
    assert curves[:3] == ["BCE", "focal, object class (alpha 0.5)", "focal, background (1 - alpha = 0.5)"]
    assert "(1 - p_t)^1" in curves and len(curves) == 3 + 2 * (len(OTHER_GAMMAS) - 1) + 1
    shares = [t["name"] for t in _traces(tmp_path / "losses" / "loss-shares.html")]
    assert shares == ["box", "positives", "hard negatives", "easy negatives"]
    for name in ("BCE", "focal"):
        html = (tmp_path / "losses" / f"loss-map-{name}.html").read_text()
        assert f"{name}: class loss by cell, the 38x38 level holds" in html

    code, _, _ = _export(capsys, "--page", "anchors", "--checkpoint", SHIPPED, *data, "--out", tmp_path / "anchors")
    assert code == 0
    levels = [t["name"] for t in _traces(tmp_path / "anchors" / "anchor-overlay.html") if "level" in str(t.get("name"))]
    assert levels == ["level 0: 38x38", "level 1: 19x19", "level 2: 10x10", "level 3: 5x5", "level 4: 3x3",
                      "level 5: 1x1"]  # fmt: skip
    assert [t["name"] for t in _traces(tmp_path / "anchors" / "coverage.html")] == ["demo_focal.pt"]


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (("--page", "predictions"), 2, "invalid choice: 'predictions'"),
        (("--page", "evaluate", "--checkpoint", "gone.pt"), 1, "gone.pt: checkpoint file not found"),
        (("--page", "losses"), 1, "--page losses needs --checkpoint"),
        (("--page", "anchors", "--anchors", "nowhere.json"), 1, "nowhere.json: cannot read the anchors file"),
    ],
)
def test_bad_export_arguments_one_line(
    args: tuple, status: int, needle: str, demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Kills: an unknown page, a missing checkpoint or anchors file ending in a traceback, exit 0 or
    files written."""
    out = tmp_path / "out"
    try:
        code, _, err = _export(capsys, *args, "--data", f"demo:{demo_root}", "--out", out)
    except SystemExit as e:  # argparse's own errors
        code, err = e.code, capsys.readouterr().err
    assert code == status
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("page", ["pages/anchors.py", "pages/matching.py", "pages/overview.py"])
def test_every_figure_has_its_html_button(page: str, data_root: Path) -> None:
    """Kills: a figure on these pages left as a bare st.plotly_chart (no HTML export), or show_figure
    dropping the chart's key (Matching's click selection reads it)."""
    at = run_app(page)
    charts = {c.key for c in at.get("plotly_chart")}
    assert charts
    html_buttons = {b.key for b in at.download_button if b.label == "HTML"}
    assert {c + keys.FIGURE_HTML for c in charts} <= html_buttons
    if page == "pages/matching.py":
        assert keys.IMAGE_CHART in charts

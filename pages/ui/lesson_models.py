"""The lesson walkthrough's stages that put two trained models side by side (5: 4x4 against 189
anchors, 6: BCE against focal), its NMS stage, and the ladder summary."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from detviz.figures import detections_figure, ground_truth_figure, ladder_figure, loss_map_figure
from detviz.ladder import BY_FILE, LADDER, LESSON_PRINTED, NEXT_STEP, found_objects
from detviz.postprocess import KEPT, SUPPRESSED
from pages.ui import keys, ladder
from pages.ui.cache import image_uri
from pages.ui.data import Picture
from pages.ui.models import checkpoint_dir
from pages.ui.widgets import show_figure

SIDE_HEIGHT = 400
NMS_MODELS = ("lesson_multiscale_focal.pt", "lesson_multiscale_bce.pt", "lesson_4x4_bce.pt", "demo_focal.pt",
              "demo_bce.pt")  # fmt: skip


def val_map(detector: Any, name: str, container=st) -> float | None:
    """The detector's VOC mAP@0.5 (all-point) on the val split as a metric; the value, or None."""
    val = ladder.val_index()
    value = ladder.scored("map", detector, val) if val else None
    if value is not None:
        container.metric(f"{name}: mAP@0.5 on {len(val.index)} {val.split} images", f"{value:.3f}",
                         help="VOC all-point AP at IoU 0.5, averaged over classes; score threshold 0.01.")  # fmt: skip
    return value


def compare_stage(picture: Picture, files: tuple[str, str], losses: bool) -> None:
    """The two stage models' detections on the picture side by side, with each one's val mAP;
    with `losses`, where each one's own training loss comes from on this image."""
    st.divider()
    a, b = (BY_FILE[f] for f in files)
    st.subheader(f"Trained: {a.stage.split('. ', 1)[1]} against {b.stage.split('. ', 1)[1]}")
    c1, c2 = st.columns(2)
    score = c1.slider("Score threshold", 0.05, 0.95, 0.3, 0.05, key=keys.LESSON_COMPARE_SCORE)
    level = 0
    if losses:
        level = c2.radio("Loss map of the grid", (0, 1, 2), format_func=("4x4", "2x2", "1x1").__getitem__,
                         horizontal=True, key=keys.LESSON_LOSS_LEVEL)  # fmt: skip
    maps = {}
    for column, stage in zip(st.columns(2), (a, b), strict=True):
        with column:
            chosen = ladder.stage_model(stage, picture, keys.LESSON_MODEL + stage.file)
            if chosen is None:
                continue
            name, detector = chosen
            (found,) = detector.detect([picture.image], score, return_trace=True)
            hit = found_objects(found.boxes, found.labels, picture.boxes, picture.labels)
            st.markdown(f"**{name}**: {len(detector.anchors)} anchors, {detector.info.training.get('loss', '?')} "
                        f"loss; finds **{int(hit.sum())}** of {len(hit)} objects here with {len(found)} boxes.")  # fmt: skip
            maps[stage.file] = val_map(detector, name)
            fig = detections_figure(picture.image, found.trace, detector.classes, show_suppressed=False,
                                    gt_boxes=picture.boxes, gt_labels=picture.labels, missed=~hit,
                                    height=SIDE_HEIGHT, encode=image_uri)  # fmt: skip
            show_figure(fig, f"lesson-compare-{stage.file}")
            if losses:
                _loss_map(picture, detector, name, level)
    if len(maps) == 2 and None not in maps.values():
        better = max(maps, key=maps.get)
        st.caption(f"On the val images {better} scores the higher mAP ({maps[better]:.3f} against "
                   f"{min(maps.values()):.3f}).")  # fmt: skip
    ladder.train_stage_now(b, picture)


def _loss_map(picture: Picture, detector: Any, name: str, level: int) -> None:
    """Where the model's own classification loss comes from on this image (the Losses page's code)."""
    from detviz.losses import loss_breakdown, ssd_loss_details
    from detviz.matching import DEFAULT_IOU_THRESHOLD

    outputs = detector.raw_outputs([picture.image])
    loss = detector.info.training.get("loss", "focal")
    anchors = detector.anchors.to("cpu")
    gt = picture.normalized[None]
    valid = picture.labels[None] >= 0
    details = ssd_loss_details(*(o.cpu() for o in outputs), gt, picture.labels[None], valid, anchors,
                               classification=loss, iou_threshold=DEFAULT_IOU_THRESHOLD, coding=detector.coding)  # fmt: skip
    per_anchor = details.anchor_loss_cls[0]
    total = float(per_anchor.sum())
    share = per_anchor / total if total > 0 else per_anchor * 0
    parts = loss_breakdown(details)
    easy = parts.easy_negative_cls / total if total > 0 else 0.0
    title = f"{name}: {loss} class loss by cell"
    show_figure(loss_map_figure(picture.image, anchors, share, min(level, len(anchors.grids) - 1), title,
                                height=SIDE_HEIGHT, encode=image_uri), f"lesson-loss-{name}")  # fmt: skip
    st.caption(f"Easy background anchors (p_t > 0.9, {parts.easy_negatives} of {len(anchors)}) carry "
               f"**{easy:.0%}** of its class loss on this image.")  # fmt: skip


def nms_stage(picture: Picture, text, figure) -> None:
    """Stage 7: NMS on a trained model, the 189-anchor focal one by default."""
    from pages.ui.models import detector_of

    present = [f for f in NMS_MODELS if (checkpoint_dir() / f).is_file()]
    with text:
        st.markdown(
            "A trained model fires several anchors on the same object. **Non-maximum suppression** keeps "
            "the best-scoring box of each class and drops any box of that class overlapping it by more than "
            "an IoU limit; then the next best left, and so on."
        )
        if not present:
            st.info("No trained model is shipped (`make lesson-checkpoints`), so there are no predictions to show.")
            show_figure(ground_truth_figure(picture.image, picture.boxes, picture.labels, picture.classes,
                                            height=480, encode=image_uri), "lesson-nms-figure", figure)  # fmt: skip
            return
        name = st.selectbox("Model", present, key=keys.LESSON_NMS_MODEL,
                            help="The lesson's 189-anchor focal model first.")  # fmt: skip
        detector = detector_of(checkpoint_dir() / name, name)
        if detector is None:
            return
        from detviz.models import compatibility_problems

        problems = compatibility_problems(detector.info, class_names=picture.classes)
        if problems:
            st.warning(f"{name} does not know this image's classes ({'; '.join(problems)}): choose a demo image.")
            return
        nms_iou = st.slider("NMS IoU limit", 0.1, 1.0, 0.45, 0.05, key=keys.LESSON_NMS)
        score = st.slider("Score threshold", 0.05, 0.95, 0.3, 0.05, key=keys.LESSON_SCORE)
        (detections,) = detector.detect([picture.image], score, nms_iou, return_trace=True)
        trace = detections.trace
        kept, gone = int((trace.status == KEPT).sum()), int((trace.status == SUPPRESSED).sum())
        st.markdown(f"**{len(trace.status)}** boxes score above {score:g}; NMS keeps **{kept}** and drops {gone}.")
    with figure:
        show_figure(detections_figure(picture.image, trace, detector.classes, gt_boxes=picture.boxes,
                                      height=480, encode=image_uri), "lesson-nms-figure")  # fmt: skip


def ladder_rows(metrics: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per stage model: its val metric (from the model card's metrics.json), the lesson's
    printed number where it printed one, and what the next step fixes."""
    rows = []
    for m in LADDER:
        row = metrics.get(m.file, {})
        printed = LESSON_PRINTED.get(m.file, {}).get("accuracy") if m.kind in ("largest", "multilabel") else None
        rows.append({
            "stage": m.stage,
            "model": m.file,
            "val metric": m.metric_name,
            "detviz (demo val)": row.get(m.metric),
            "lesson printed (VOC)": (f"accuracy {printed:.3f}" if printed is not None else "no number printed"),
            "what the next step fixes": NEXT_STEP[m.file],
        })  # fmt: skip
    return pd.DataFrame(rows)


def ladder_stage() -> None:
    """The ladder: every stage's val metric in one table and one figure."""
    st.markdown("Each stage's model, measured on the demo validation images none of them saw in training "
                "(the numbers of the model card, `checkpoints/README.md`). Each metric is the one of its stage: "
                "the first two models cannot be scored by mAP, since they give no box per object.")  # fmt: skip
    table = ladder_rows(ladder.ladder_metrics())
    if table["detviz (demo val)"].isna().all():
        st.info("No ladder model is shipped yet (`make lesson-checkpoints` trains them): the table lists the stages.")
    show_figure(ladder_figure(table["stage"].tolist(), [None if pd.isna(v) else float(v) for v in table["detviz (demo val)"]],
                              table["val metric"].tolist()), "lesson-ladder")  # fmt: skip
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"detviz (demo val)": st.column_config.NumberColumn(format="%.3f")})  # fmt: skip
    largest = LESSON_PRINTED["lesson_largest.pt"]
    st.caption(f"The lesson (Pascal VOC, pretrained ResNet34, 224 px) printed accuracy {largest['accuracy']:.3f} and "
               f"box L1 {largest['l1_pixels']:g} px for its largest-object model and per-class accuracy "
               f"{LESSON_PRINTED['lesson_multilabel.pt']['accuracy']:.3f} for its multi-label model; it printed no "
               "mAP for its SSD models.")  # fmt: skip

"""Predictions & NMS: one image's detections under live thresholds, NMS step by step, and the
dataset's mAP following the sliders."""

import json
import math
from typing import NamedTuple

import pandas as pd
import streamlit as st
import torch

from detviz.boxes import to_pixel_boxes
from detviz.codes import DETECTION_OUTCOMES, NMSDecision, Outcome
from detviz.evaluate import coco_results, compare_image, mean_ap, scale_flat, voc_map
from detviz.explain import clicked_anchor, nms_decision, nms_decision_label, trace_of_classes
from detviz.figures import class_scores_figure, detections_figure, pr_curves_figure
from detviz.figures.report import MAP_METHOD
from detviz.inference import NonFiniteOutputs, to_pixels
from detviz.postprocess import postprocess
from pages import ui
from pages.ui import keys, scoring
from pages.ui.cache import image_uri
from pages.ui.live import live_set
from pages.ui.widgets import LIVE_FLOOR

ui.ensure_entrypoint()


def main() -> None:
    st.title("Predictions & NMS")
    st.caption("Move the thresholds and watch this image's detections, NMS's decisions and the dataset's mAP "
               "change together. Green: true positive, red: false positive, orange: duplicate, pink dashes: "
               "objects nobody found. Compare with: a second model, side by side.")  # fmt: skip
    index = ui.current_index()
    top = st.columns([1.7, 1.7, 2.4, 1.7, 1.4], vertical_alignment="bottom")
    picked = ui.checkpoint_picker(top[0])
    picked_b = scoring.compare_picker(top[1])
    with top[2]:
        picture = ui.pick_picture(index)
    limit = ui.subset_picker(top[3])
    ui.share_link(top[4])
    if picked is None:
        if not ui.shipped_detectors():
            st.info("No checkpoint yet: train one on the Train page, or upload one.")
        return
    name, path = picked
    detector = ui.detector_of(path, name)
    if detector is None:
        return
    own = ui.own_picture(list(detector.classes))
    truth = own is None  # the dataset's image, with its ground truth
    picture = picture if truth else own
    if picture is None:
        return
    scored = index is not None and ui.fits_dataset(detector, index, name)
    model_b = scoring.second_model(picked_b, name, path, index) if scored and truth else None
    if picked_b is not None and not truth:
        st.info("Compare with: a comparison scores both models on the ground truth, so it shows the dataset's "
                "images, not your own.")  # fmt: skip
    if picked_b is not None and not scored:
        st.info("Compare with: a comparison scores both models on this dataset's ground truth, so A must predict "
                "its classes.")  # fmt: skip
    if scored:
        scoring.warn_if_training_split(detector, *([model_b.detector] if model_b else []))
    classes = list(detector.classes)
    thresholds = ui.threshold_sliders(classes)
    score, nms, max_dets, eval_iou, only = thresholds

    try:
        trace, outcome, missed, gt_keep = _detections(detector, path, picture, *thresholds, scored and truth)
    except NonFiniteOutputs as e:  # a checkpoint with NaN weights loads, but predicts nothing
        st.error(ui.model_error(e, path, name))
        return
    if model_b is not None:
        try:
            seen_b = _detections(model_b.detector, model_b.path, picture, *thresholds, True)
        except NonFiniteOutputs as e:
            st.error(f"Compare with: {ui.model_error(e, model_b.path, model_b.name)} Showing {name} alone.")
        else:
            a = scoring.Model(name, path, detector)
            _compare((a, model_b), ((trace, outcome, missed, gt_keep), seen_b), picture, limit, thresholds, classes)
            return
    left, right = st.columns([3, 2])
    with left:
        step = _step_slider(trace, classes)
        fig = detections_figure(
            picture.image, trace, classes, gt_boxes=picture.boxes[gt_keep], gt_labels=picture.labels[gt_keep],
            outcome=outcome if scored and truth else None, missed=missed[gt_keep] if missed is not None else None,
            upto=step if step < trace.status.numel() else None, selected=_selected(trace), height=600,
            encode=image_uri,
        )  # fmt: skip
        ui.show_figure(fig, keys.DETECTIONS_CHART, on_select=_pick_from_figure, selection_mode="points")
        _image_metrics(trace, outcome, missed, scored and truth)
    with right:
        if scored:
            _live_map(path, limit, score, nms, max_dets, eval_iou, only, classes)
        else:
            st.info("No live mAP: the checkpoint's classes are not the dataset's.")
    if trace.status.numel():
        _candidates(detector, path, picture, trace, outcome, classes, step)


def _compare(models, seen, picture, limit, thresholds, classes) -> None:
    """Models A and B side by side on the image (each with its counts and live mAP), then what
    differs. seen: per model, what `_detections` returned."""
    eval_iou, only = thresholds[3:]
    scoring.swap_button()
    values = []
    for side, column in enumerate(st.columns(2)):
        model, (trace, outcome, missed, gt_keep) = models[side], seen[side]
        tag = "AB"[side]
        with column:
            st.subheader(f"{tag}: {model.name}")
            st.caption(model.summary)
            fig = detections_figure(
                picture.image, trace, classes, show_suppressed=False, gt_boxes=picture.boxes[gt_keep],
                gt_labels=picture.labels[gt_keep], outcome=outcome, missed=missed[gt_keep], height=480, encode=image_uri,
            )  # fmt: skip
            ui.show_figure(fig, f"{keys.DETECTIONS_CHART}-{tag.lower()}")
            _image_metrics(trace, outcome, missed, True)
            found = _live_result(model.path, limit, thresholds, model.name)  # or its progress, while it builds
            values.append(mean_ap(found[1].ap, only or None) if found else math.nan)
            if found is None:
                continue
            change = values[1] - values[0] if side == 1 else math.nan
            st.metric(
                f"Live {scoring.map_label(eval_iou)} on {len(found[0].index)} images, {tag}", scoring.map_text(values[side]),
                None if math.isnan(change) else f"{change:+.3f} vs A", help=found[1].describe() + " Averaged over "
                "the classes shown.",
            )  # fmt: skip
    _differences(models, seen, picture, classes)
    st.caption("NMS step by step and each candidate's details: set Compare with to none (Swap A and B first to "
               "look into B). Evaluate compares the two per class and per kind of error.")  # fmt: skip


def _differences(models, seen, picture, classes) -> None:
    """Per class: objects, each model's detections and the objects each found; who found what alone."""
    st.subheader("What differs on this image")
    (trace_a, _, missed_a, gt_keep), (trace_b, _, missed_b, _) = seen
    counted = gt_keep & ~picture.difficult
    kept_a, kept_b = (t.labels[t.status == NMSDecision.KEPT] for t in (trace_a, trace_b))
    diff = compare_image(picture.labels, counted, kept_a, ~missed_a & counted, kept_b, ~missed_b & counted,
                         len(classes))  # fmt: skip
    table = pd.DataFrame({
        "class": classes, "objects": diff.objects.numpy(), "detections A": diff.detections_a.numpy(),
        "detections B": diff.detections_b.numpy(), "found A": diff.found_a.numpy(), "found B": diff.found_b.numpy(),
    })  # fmt: skip
    shown = (table.drop(columns="class").to_numpy() > 0).any(1)
    st.caption(f"Per class: objects (difficult ones not counted), each model's detections and the objects each "
               f"found. A: {models[0].name}, B: {models[1].name}.")  # fmt: skip
    st.dataframe(table[shown], hide_index=True)
    for tag, only in (("A", diff.only_a), ("B", diff.only_b)):
        found = [f"{classes[int(picture.labels[i])]} (object {i})" for i in torch.nonzero(only).flatten().tolist()]
        st.markdown(f"- Found by {tag} only: {', '.join(found) if found else 'nothing'}")


def _detections(detector, path, picture, score, nms, max_dets, eval_iou, only, scored):
    """The image's NMS trace (pixels), each candidate's Outcome (NOT_DETECTION: not kept), the missed
    objects (None when not scored) and which objects are of the classes shown."""
    logits, boxes = ui.raw_outputs(path, picture.image)
    (det,) = postprocess(logits, boxes, detector.anchors, score, nms, max_dets, coding=detector.coding,
                         return_trace=True)  # fmt: skip
    det = to_pixels(det, *picture.image.size)
    trace = det.trace
    if only:
        trace = trace_of_classes(trace, only)
    kept = torch.nonzero(trace.status == NMSDecision.KEPT).flatten()
    outcome = torch.full_like(trace.status, Outcome.NOT_DETECTION)
    missed = None
    gt_keep = torch.isin(picture.labels, torch.tensor(only)) if only else torch.ones_like(picture.labels, dtype=bool)
    if scored:
        result = voc_map(
            [(trace.boxes[kept], trace.scores[kept], trace.labels[kept])],
            [(picture.boxes[gt_keep], picture.labels[gt_keep], picture.difficult[gt_keep])],
            len(detector.classes), eval_iou, "all",
        )  # fmt: skip
        outcome[kept] = result.status[0]
        missed = torch.zeros_like(gt_keep)
        missed[gt_keep] = ~result.found[0] & ~picture.difficult[gt_keep]
    return trace, outcome, missed, gt_keep


def _image_metrics(trace, outcome, missed, scored) -> None:
    kept = trace.status == NMSDecision.KEPT
    counts = {o: int((outcome[kept] == o).sum()) for o in DETECTION_OUTCOMES}
    m = st.columns(4)
    m[0].metric("Detections", int(kept.sum()), help=f"Kept by NMS out of {trace.status.numel()} candidates.")
    if scored:
        m[1].metric("True positives", counts[Outcome.TP])
        m[2].metric("False positives", counts[Outcome.FP] + counts[Outcome.DUPLICATE],
                    help=f"{counts[Outcome.DUPLICATE]} of them duplicates.")  # fmt: skip
        m[3].metric("Missed objects", int(missed.sum()), help="Difficult objects are never counted as missed.")


def _selected(trace) -> int | None:
    k = st.session_state.get(keys.SELECTED)
    return k if k is not None and 0 <= k < trace.status.numel() else None


def _pick_from_figure() -> None:
    points = st.session_state.get(keys.DETECTIONS_CHART, {}).get("selection", {}).get("points", [])
    st.session_state[keys.SELECTED] = clicked_anchor(points, 1 << 30)


def _live_result(path, limit, thresholds, name=None):
    """(the live set, its VOC result at the thresholds, headline definition), or None (shown why)."""
    score, nms, max_dets, eval_iou, _ = thresholds
    live = live_set(path, limit, name)
    if live is None:
        return None
    return live, live.sweep.evaluate(score, nms, max_dets, eval_iou, MAP_METHOD)


def _live_map(path, limit, score, nms, max_dets, eval_iou, only, classes) -> None:
    found = _live_result(path, limit, (score, nms, max_dets, eval_iou, only))
    if found is None:
        return
    live, result = found
    reference = live.sweep.evaluate(LIVE_FLOOR, 0.45, 100, eval_iou, MAP_METHOD)
    chosen = only or list(range(len(classes)))
    value, base = mean_ap(result.ap, chosen), mean_ap(reference.ap, chosen)
    st.metric(
        f"Live {scoring.map_label(eval_iou)} on {len(live.index)} images",
        scoring.map_text(value),
        None if math.isnan(value) or math.isnan(base) else f"{value - base:+.3f} vs score 0.01, NMS 0.45",
        delta_color="normal", help=result.describe() + " Averaged over the classes shown.",
    )  # fmt: skip
    curves = {classes[c]: result.curves[c] for c in chosen if result.num_gt[c] > 0}
    ui.show_figure(pr_curves_figure(curves, height=360, title="Precision-recall at these thresholds"), "pr-curves")
    st.caption(f"{int(result.num_det.sum()):,} detections, {int(result.num_tp.sum()):,} true positives, "
               f"{int(result.num_gt.sum()):,} objects.")  # fmt: skip
    st.download_button(
        "Detections (COCO results json)", data=lambda: _coco_json(live, score, nms, max_dets),
        file_name="detections.json", mime="application/json", on_click="ignore", icon=":material/download:",
        help="These images' detections at the current thresholds, in COCO's results format (pixels).",
    )  # fmt: skip


def _coco_json(live, score, nms, max_dets) -> str:
    flat = scale_flat(live.sweep.detections(score, nms, max_dets), live.sizes)
    counts = flat.det_start.diff().tolist()
    per_image = zip(flat.det_boxes.split(counts), flat.det_scores.split(counts), flat.det_labels.split(counts),
                    strict=True)  # fmt: skip
    return json.dumps(coco_results([_ImageDetections(*p) for p in per_image], live.index))


class _ImageDetections(NamedTuple):
    """One image's detections as coco_results reads them: boxes (N, 4) pixel xyxy, scores, labels."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def _step_slider(trace, classes) -> int:
    """NMS one candidate at a time (?nmsstep=): the figure shows the first `step` decisions."""
    m = trace.status.numel()
    if m == 0:
        st.info("No candidate scores above the threshold in this image.")
        return 0
    current = st.session_state.get(keys.NMS_STEP)
    start = {"value": m}
    if current is not None and current > m:  # fewer candidates than the step asked for: the last one
        st.session_state[keys.NMS_STEP] = m
        start = {}  # the value comes from the session state (passing one too makes Streamlit warn)
    step = st.slider("NMS step by step: candidates decided, best score first", 1, max(m, 2), key=keys.NMS_STEP,
                     bind="query-params", disabled=m < 2, **start)  # fmt: skip
    step = min(step, m)
    st.markdown(nms_decision(trace, step - 1, classes))
    return step


def _candidates(detector, path, picture, trace, outcome, classes, step: int) -> None:
    st.subheader("Candidates, best score first")
    left, right = st.columns([3, 2])
    with left:
        table = pd.DataFrame({
            "class": [classes[int(c)] for c in trace.labels],
            "score": trace.scores.double().numpy(),
            "decision": [NMSDecision(int(s)).label for s in trace.status],
            "by": pd.array([int(b) if b >= 0 else None for b in trace.suppressed_by], dtype="Int64"),
            "IoU": torch.where(trace.suppressed_by >= 0, trace.suppression_iou, float("nan")).double().numpy(),
            "outcome": [Outcome(int(o)).label for o in outcome],
            "anchor": trace.anchor.numpy(),
        })  # fmt: skip
        table.index.name = "candidate"
        st.dataframe(table.iloc[:step], height=400, on_select=_pick_from_table, selection_mode="single-row",
                     key=keys.CANDIDATES, column_config={"score": st.column_config.NumberColumn(format="%.3f"),
                                                      "IoU": st.column_config.NumberColumn(format="%.2f")})  # fmt: skip
    with right:
        selected = _selected(trace)
        if selected is not None:
            _candidate_details(detector, path, picture, trace, selected, classes)
        else:
            st.caption("Click a box's centre marker, or a row of the table, to see where the detection came from: "
                       "its anchor, the raw activations, the decoded box and its score for every class.")  # fmt: skip


def _pick_from_table() -> None:
    rows = st.session_state.get(keys.CANDIDATES, {}).get("selection", {}).get("rows", [])
    st.session_state[keys.SELECTED] = int(rows[0]) if rows else None


def _candidate_details(detector, path, picture, trace, k: int, classes) -> None:
    logits, activations = ui.raw_outputs(path, picture.image)
    a = int(trace.anchor[k])
    anchors = detector.anchors
    level = int(anchors.level[a])
    w, h = picture.image.size
    nms = nms_decision_label(trace, k)
    st.markdown(f"#### Candidate {k}: {classes[int(trace.labels[k])]} {float(trace.scores[k]):.3f}, from anchor {a}")
    st.markdown(
        f"- anchor {a}: level {level} ({anchors.grids[level]}x{anchors.grids[level]} grid), row "
        f"{int(anchors.row[a])}, column {int(anchors.col[a])}, shape {int(anchors.shape_index[a])}\n"
        f"- anchor box: {_box(to_pixel_boxes(anchors.boxes[a].cpu(), w, h))} px\n"
        f"- raw box activations (x, y, w, h): {', '.join(f'{v:+.3f}' for v in activations[0, a].tolist())}\n"
        f"- decoded box ({detector.coding} coding): {_box(trace.boxes[k])} px\n"
        f"- NMS: {nms}"
    )
    scores = torch.sigmoid(logits[0, a, : len(classes)])
    ui.show_figure(class_scores_figure(scores, classes, int(trace.labels[k])), "class-scores")


def _box(box: torch.Tensor) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in box.tolist()) + ")"


main()

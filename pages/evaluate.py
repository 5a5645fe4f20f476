"""Evaluate: where a checkpoint's mAP comes from and where it goes: per-class AP and PR curves,
confused classes, a TIDE-style error breakdown, the worst images, a metric audit and the
threshold surface."""

import math
from urllib.parse import urlencode

import pandas as pd
import streamlit as st
import torch

from detviz.boxes import to_pixel_boxes
from detviz.codes import ERROR_TYPES, ErrorKind
from detviz.data.voc import file_stamp
from detviz.evaluate import (
    class_confusion,
    compare_ap,
    compare_errors,
    error_breakdown_flat,
    image_error_counts,
    mean_ap,
    metric_audit,
    worst_images,
)
from detviz.figures import (
    ap_bar_figure,
    ap_compare_figure,
    confusion_figure,
    error_breakdown_figure,
    error_difference_figure,
    pr_curves_figure,
    surface_figure,
)
from detviz.figures.report import MAP_METHOD, SURFACE_NMS, SURFACE_SCORES
from pages import ui
from pages.ui import keys, scoring
from pages.ui.live import live_set

ui.ensure_entrypoint()

WORST = 12
SHOWN_SCORE = 0.25  # false positives drawn on the worst images' thumbnails
PREDICTIONS_PATH = "predictions"  # the Predictions page's url_path in app.py


def main() -> None:
    st.title("Evaluate")
    st.caption("The model's mistakes, measured: which classes it gets right, what kind of error costs the most "
               "mAP, which images go worst, and how much the way mAP is computed changes the number. Compare "
               "with: a second model, B, scored the same way.")  # fmt: skip
    index = ui.current_index()
    top = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    picked = ui.checkpoint_picker(top[0])
    picked_b = scoring.compare_picker(top[1])
    limit = ui.subset_picker(top[2])
    ui.share_link(top[3])
    if picked is None or index is None:
        return
    name, path = picked
    detector = ui.detector_of(path, name)
    if detector is None or not ui.fits_dataset(detector, index, name):
        return
    model_b = scoring.second_model(picked_b, name, path, index)
    scoring.warn_if_training_split(detector, *([model_b.detector] if model_b else []))
    classes = list(detector.classes)
    score, nms, max_dets, eval_iou, only = ui.threshold_sliders(classes, default_score=0.01)
    live = live_set(path, limit, name)
    if live is None:
        return
    key = (str(path), file_stamp(path), live.index.source, len(live.index), score, nms, max_dets, eval_iou)
    flat = live.sweep.detections(score, nms, max_dets)
    breakdown = _breakdown(key, flat, len(classes), eval_iou)
    chosen = only or list(range(len(classes)))
    other = _scored_b(model_b, limit, key, (score, nms, max_dets), len(classes), eval_iou)
    if other:
        scoring.swap_button()
    _headline(breakdown, other, flat, chosen, live, eval_iou)

    names = ["Per class", "Errors", "Worst images", "Metric audit", "Threshold surface"]
    tabs = st.tabs(["A vs B", *names] if other else names)
    if other:
        with tabs[0]:
            _a_vs_b((scoring.Model(name, path, detector), other[0]), breakdown, other[2], classes, chosen)
        tabs = tabs[1:]
        for tab in tabs:
            tab.caption(f"Model A, {name}. Swap A and B (above) to see these for {other[0].name}.")
    per_class, errors, worst, audit, surface = tabs
    with per_class:
        _per_class(breakdown.base, classes, chosen, flat, eval_iou)
    with errors:
        _errors(breakdown, classes)
    with worst:
        _worst(breakdown, live, flat)
    with audit:
        _audit(key, live, nms, max_dets)
    with surface:
        _surface(key, live, score, nms, max_dets, eval_iou)


def _scored_b(model_b, limit, key_a, thresholds, num_classes, eval_iou):
    """(model B, its detections, its error breakdown) on the same images and thresholds as A, or None
    (no B, or its outputs are not finite: said by live_set)."""
    if model_b is None:
        return None
    live = live_set(model_b.path, limit, model_b.name)
    if live is None:
        return None
    flat = live.sweep.detections(*thresholds)
    key = (str(model_b.path), file_stamp(model_b.path), *key_a[2:])
    return model_b, flat, _breakdown(key, flat, num_classes, eval_iou)


def _headline(breakdown, other, flat, chosen, live, eval_iou) -> None:
    """The headline mAP (of A and B when comparing), images, detections and objects."""
    base = breakdown.base
    value = mean_ap(base.ap, chosen)
    how = base.describe() + " Averaged over the classes shown."
    m = st.columns([3, 3, 1.2, 2.4, 1.2] if other else 4)
    if other:
        value_b = mean_ap(other[2].base.ap, chosen)
        change = value_b - value
        m[0].metric(f"A: {scoring.map_label(eval_iou)}", scoring.map_text(value), help=how)
        m[1].metric(f"B: {scoring.map_label(eval_iou)}", scoring.map_text(value_b),
                    None if math.isnan(change) else f"{change:+.3f} vs A", delta_color="normal" if change else "off",
                    help=how)  # fmt: skip
        m = m[1:]
    else:
        m[0].metric(scoring.map_label(eval_iou), scoring.map_text(value), help=how)
    m[1].metric("Images", len(live.index))
    detections = f"{flat.det_labels.numel():,}" + (f" / {other[1].det_labels.numel():,}" if other else "")
    m[2].metric("Detections" + (" (A / B)" if other else ""), detections)
    m[3].metric("Objects", f"{int(base.num_gt.sum()):,}", help="Difficult objects not counted.")


def _a_vs_b(models, breakdown_a, breakdown_b, classes, chosen) -> None:
    """AP per class of both (grouped bars and a table), then the error breakdown, B minus A."""
    st.caption(" · ".join(f"**{tag}**: {m.name} ({m.summary})" for tag, m in zip("AB", models, strict=True)))
    names = (models[0].name, models[1].name)
    ap = compare_ap(breakdown_a.base, breakdown_b.base, chosen)
    left, right = st.columns([2, 3])
    table = pd.DataFrame({
        "class": [classes[c] for c in ap.classes.tolist()], "objects": ap.num_gt.numpy(),
        "AP A": _cells(ap.ap_a), "AP B": _cells(ap.ap_b), "B − A": _cells(ap.difference),
    })  # fmt: skip
    left.dataframe(table, hide_index=True, column_config={
        "AP A": st.column_config.NumberColumn(format="%.3f"), "AP B": st.column_config.NumberColumn(format="%.3f"),
        "B − A": st.column_config.NumberColumn(format="%+.3f")})  # fmt: skip
    with right:
        ui.show_figure(ap_compare_figure(ap, classes, names), "ap-compare")
    errors = compare_errors(breakdown_a, breakdown_b)
    ui.show_figure(error_difference_figure(errors, names), "error-difference")
    table = pd.DataFrame({
        "error": errors.names, "errors A": errors.counts_a.numpy(), "errors B": errors.counts_b.numpy(),
        "errors B − A": errors.count_difference.numpy(), "mAP gain A": _cells(errors.gain_a),
        "mAP gain B": _cells(errors.gain_b), "mAP gain B − A": _cells(errors.gain_difference),
    })  # fmt: skip
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%+.3f")
                                                        for c in table.columns[4:]})  # fmt: skip
    st.caption("Each mAP gain is what fixing every error of that kind would add to that model's mAP (TIDE's "
               "oracle, as on the Errors tab); B − A above 0: B loses more mAP to that kind of error than A. "
               "Error counts and gains are over all classes.")  # fmt: skip


def _cells(values) -> list[float | None]:
    """A float column for a table: NaN (a class without objects) as an empty cell."""
    return [None if math.isnan(v) else v for v in values.tolist()]


@st.cache_resource(max_entries=16, show_spinner="Sorting the mistakes…")
def _breakdown(key: tuple, _flat, num_classes: int, eval_iou: float):
    return error_breakdown_flat(_flat, num_classes, eval_iou, "all")


def _per_class(base, classes, chosen, flat, eval_iou) -> None:
    table = pd.DataFrame({
        "class": [classes[c] for c in chosen],
        "AP": _cells(base.ap[chosen]),
        "objects": base.num_gt[chosen].numpy(),
        "detections": base.num_det[chosen].numpy(),
        "true positives": base.num_tp[chosen].numpy(),
        "false positives": base.num_fp[chosen].numpy(),
    })  # fmt: skip
    left, right = st.columns([2, 3])
    left.dataframe(table, hide_index=True, column_config={"AP": st.column_config.ProgressColumn(
        format="%.3f", min_value=0.0, max_value=1.0)})  # fmt: skip
    with right:
        ui.show_figure(ap_bar_figure(base.ap[chosen], [classes[c] for c in chosen]), "ap-per-class")
    curves = {classes[c]: base.curves[c] for c in chosen}
    ui.show_figure(pr_curves_figure(curves, height=420, title="Precision-recall per class (hover: the score "
                                                               "threshold of each point)"), "pr-per-class")  # fmt: skip
    ui.show_figure(confusion_figure(class_confusion(flat, len(classes), eval_iou), classes), "confusion")
    st.caption(f"Each detection sits in the row of the object it overlaps most (IoU above {eval_iou:g}; "
               "'background' when none) and the column of the class it predicted; objects no detection of their "
               "class reached are in the 'missed' column.")  # fmt: skip


def _errors(breakdown, classes) -> None:
    totals = breakdown.counts.sum(0)
    ui.show_figure(error_breakdown_figure(breakdown.delta_map, totals), "error-breakdown")
    st.caption(" ".join(t.description for t in ERROR_TYPES) + " Each bar is the mAP gained if every error of that "
               "kind were fixed (TIDE's oracle).")  # fmt: skip
    table = pd.DataFrame(breakdown.counts.numpy(), columns=[t.name for t in ERROR_TYPES])
    table.insert(0, "class", classes)
    st.dataframe(table, hide_index=True)


def _worst(breakdown, live, flat) -> None:
    scores = list(flat.det_scores.split(flat.det_start.diff().tolist()))
    worst = worst_images(breakdown, scores, WORST)
    if not worst:
        st.success("No mistakes at these thresholds.")
        return
    counts = image_error_counts(breakdown)
    st.caption(f"The images with the weightiest mistakes: each missed object counts 1, each false positive its "
               f"score. Drawn: false positives scoring above {SHOWN_SCORE:g} (solid) and missed objects (dashed). "
               "Open one to see it in Predictions at these thresholds (in a new tab).")  # fmt: skip
    cols = st.columns(4)
    for n, i in enumerate(worst):
        record = live.index[i]
        lo, hi = int(flat.det_start[i]), int(flat.det_start[i + 1])
        wrong = (breakdown.error[i] >= 0) & (flat.det_scores[lo:hi] > SHOWN_SCORE)
        det_boxes = to_pixel_boxes(flat.det_boxes[lo:hi][wrong], record.width, record.height).float()
        missed = breakdown.missed[i]
        boxes = torch.cat([det_boxes, record.boxes[missed]])
        labels = torch.cat([flat.det_labels[lo:hi][wrong], record.labels[missed]])
        dashed = torch.cat(
            [torch.zeros(det_boxes.shape[0], dtype=torch.bool), torch.ones(int(missed.sum()), dtype=torch.bool)]
        )
        with cols[n % 4]:
            thumb = ui.record_thumbnail(record, 220, boxes, labels, dashed)
            if thumb is not None:
                st.image(thumb)
            fp = int(wrong.sum())
            st.link_button(f"{record.image_id}: {fp} false above {SHOWN_SCORE:g}, {int(counts[i, ErrorKind.MISS])} missed",
                           _link(record.image_id), icon=":material/open_in_new:", type="tertiary")  # fmt: skip


def _link(image_id: str) -> str:
    """The Predictions address of an image: this view's checkpoint (unless uploaded), dataset and thresholds.

    A plain address, opened in a new tab (a new session), not an in-app `st.page_link`: when the
    app navigates between pages in one session, Streamlit drops the query parameters bound to
    widgets of the page being left, and Evaluate binds the same keys (ckpt, score, nms, ...) as
    Predictions, so the image would open with Predictions' defaults. Relative, so it works under
    any host and base path.
    """
    params = {keys.IMAGE: image_id}
    for key in (keys.CHECKPOINT, keys.CHECKPOINT_B, keys.DATA_KIND, keys.VOC_DIR, keys.COCO_JSON, keys.COCO_IMAGES,
                keys.SPLIT, keys.SCORE, keys.NMS_IOU, keys.MAX_DETS, keys.EVAL_IOU, keys.SUBSET):  # fmt: skip
        value = st.session_state.get(key)
        if value is not None and value not in ("", ui.UPLOAD, scoring.NO_COMPARISON):
            params[key] = str(value)
    return f"{PREDICTIONS_PATH}?{urlencode(params)}"


@st.cache_resource(max_entries=8, show_spinner="Scoring the detections every way…")
def _audit_rows(key: tuple, _live, nms: float, max_dets: int):
    return metric_audit(_live.sweep, _live.sizes, nms, max_dets)


def _audit(key, live, nms, max_dets) -> None:
    st.caption(f"The same model, NMS IoU {nms:g}, at most {max_dets} detections per image, scored the ways papers "
               "and tools do. Each row says why its number differs from the first.")  # fmt: skip
    rows = _audit_rows((*key[:4], nms, max_dets), live, nms, max_dets)
    table = pd.DataFrame({
        "protocol": [r.protocol for r in rows],
        "score threshold": [r.score_threshold for r in rows],
        "difficult objects": [r.difficult for r in rows],
        "mAP": [r.value for r in rows],
        "why it differs": [r.why for r in rows],
    })  # fmt: skip
    table["mAP"] = table["mAP"].map("{:.3f}".format)
    table["score threshold"] = table["score threshold"].map("{:g}".format)
    st.table(table, hide_index=True)  # a table, not a grid: the sentences wrap


@st.cache_resource(max_entries=8, show_spinner="Scoring every pair of thresholds…")
def _surface_values(key: tuple, _live, max_dets: int, eval_iou: float):
    return _live.sweep.surface(SURFACE_SCORES, SURFACE_NMS, max_dets, eval_iou, MAP_METHOD)


def _surface(key, live, score, nms, max_dets, eval_iou) -> None:
    values = _surface_values((*key[:4], max_dets, eval_iou), live, max_dets, eval_iou)
    ui.show_figure(surface_figure(values, SURFACE_SCORES, SURFACE_NMS, (score, nms)), "threshold-surface")
    st.caption(f"{scoring.map_label(eval_iou)} (the headline's definition) for each pair of thresholds, the "
               "other settings as above; the star marks the best pair. A higher score threshold can only cut "
               "recall, so AP rarely gains from it.")  # fmt: skip


main()

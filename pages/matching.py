"""Matching: which ground truth each anchor learns, step by step, and why for any anchor."""

import streamlit as st
import torch

from detviz.boxes import to_pixel_boxes
from detviz.explain import clicked_anchor, explain_anchor
from detviz.figures import iou_heatmap, matching_figure
from detviz.matching import match_anchors
from pages import ui
from pages.ui import keys
from pages.ui.cache import image_uri

ui.ensure_entrypoint()

STEPS = {
    "overlap": "1. Every anchor finds the object it overlaps most.",
    "force": "2. Every object takes its best anchor, whatever the IoU.",
    "threshold": "3. Other anchors are positive only above the threshold.",
}
HEATMAP_ALL = 200  # up to this many anchors the Jaccard matrix shows them all
HEATMAP_MAX_COLUMNS = 400  # beyond this a column is narrower than a pixel or two


def main() -> None:
    st.title("Matching")
    st.caption("Before the loss can compare predictions with the ground truth, every anchor is given a "
               "target: one of the objects, or background. This page runs the rule on one image.")  # fmt: skip
    index = ui.current_index() if st.session_state.get(keys.SELECTION) is not None else None
    c1, c2, c3 = st.columns([2, 2, 1])
    with c1:
        config, name = ui.anchor_picker(default="lesson_4x4")
    anchors = ui.anchors_of(config)
    with c2:
        picture = ui.pick_picture(index, lesson="first")
    threshold = c3.slider("Threshold (IoU)", 0.05, 0.95, 0.5, 0.05, key=keys.IOU, bind="query-params",
                          help="The lesson uses 0.5 here; its loss function uses 0.4.")  # fmt: skip
    if picture is None:
        st.info("No image to show.")
        return
    match = match_anchors(picture.normalized, anchors.boxes, threshold)

    left, right = st.columns([3, 2])
    with right:
        step = st.radio("Step of the rule", list(STEPS), captions=list(STEPS.values()), key=keys.STEP,
                        bind="query-params", horizontal=False)  # fmt: skip
        negatives = step == "threshold" and st.toggle(
            "Draw the negative anchors", key=keys.NEGATIVES, bind="query-params", disabled=len(anchors) > 20_000
        )
        selected = ui.anchor_input(len(anchors))
    with left:
        fig = matching_figure(
            picture.image, anchors, match, list(STEPS).index(step) + 1, picture.boxes, picture.labels,
            picture.classes, selected=selected, show_negatives=negatives, encode=image_uri,
        )  # fmt: skip
        ui.show_figure(fig, keys.IMAGE_CHART, on_select=_on_click(keys.IMAGE_CHART, len(anchors)),
                       selection_mode="points")  # fmt: skip
        st.caption("Click an anchor's centre dot to see why it is positive or negative.")
    with right:
        _step_numbers(step, match, picture)
        if selected is not None:
            _anchor_story(match, anchors, selected, picture)

    if picture.boxes.shape[0] == 0:
        st.info("This image has no objects: there is no Jaccard matrix, and every anchor is background.")
    else:
        _jaccard(match, anchors, picture, threshold, selected)
    if picture.name == ui.LESSON_EXAMPLE:
        _lesson_check(match, name, threshold)


def _on_click(chart_key: str, num_anchors: int):
    def update() -> None:
        event = st.session_state.get(chart_key)
        points = event.get("selection", {}).get("points") if event else None
        anchor = clicked_anchor(points, num_anchors)
        if anchor is not None:
            st.session_state[keys.ANCHOR] = anchor

    return update


def _step_numbers(step: str, match, picture: ui.Picture) -> None:
    n_gt = picture.boxes.shape[0]
    name = [f"{g + 1}: {picture.classes[int(picture.labels[g])]}" for g in range(n_gt)]
    if step == "overlap":
        touching = match.argmax_iou > 0
        st.markdown(f"**{int(touching.sum()):,}** of {len(match.positive):,} anchors overlap an object at all.")
        if n_gt:
            st.dataframe({
                "object": name,
                "anchors that overlap it most": [int((touching & (match.argmax_gt == g)).sum()) for g in range(n_gt)],
                "largest IoU": [round(float(match.iou[g].max()), 4) for g in range(n_gt)],
            }, hide_index=True)  # fmt: skip
    elif step == "force":
        st.markdown("Each object's best anchor becomes positive for it, even when the IoU is small: no object is "
                    "left without an anchor.")  # fmt: skip
        if n_gt:
            best = match.best_anchor.tolist()
            st.dataframe({
                "object": name,
                "forced anchor": [a if a >= 0 else None for a in best],
                "IoU": [round(float(match.iou[g, a]), 4) if a >= 0 else None for g, a in enumerate(best)],
                "note": [_force_note(match, g, a) for g, a in enumerate(best)],
            }, hide_index=True)  # fmt: skip
    else:
        forced = int(match.forced.sum())
        by_overlap = int((match.positive & ~match.forced).sum())
        st.markdown(f"**{by_overlap + forced:,}** positive anchors: {by_overlap:,} above IoU {match.iou_threshold:g}, "
                    f"{forced:,} by force. **{int((~match.positive).sum()):,}** negatives learn background.")  # fmt: skip
        positives = torch.nonzero(match.positive).flatten().tolist()
        if positives:
            st.dataframe({
                "anchor": positives,
                "object": [name[int(match.best_gt[a])] for a in positives],
                "IoU": [round(float(match.best_iou[a]), 4) for a in positives],
                "why": ["forced" if match.forced[a] else "above threshold" for a in positives],
            }, hide_index=True, height=min(400, 38 + 35 * len(positives)))  # fmt: skip


def _force_note(match, g: int, a: int) -> str:
    if a < 0:
        return "no anchor overlaps it"
    first_choice = int(match.iou[g].argmax())
    if first_choice != a:
        return f"anchor {first_choice} went to object {int(match.forced_gt[first_choice]) + 1}, which overlaps it more"
    return ""


def _anchor_story(match, anchors, selected: int, picture: ui.Picture) -> None:
    story = explain_anchor(match, selected, anchors.boxes, picture.normalized, picture.labels, picture.classes)
    with st.container(border=True):
        st.markdown(f"**{anchors.describe(selected).capitalize()}**")
        (st.success if story.positive else st.info)(story.reason)
        w, h = picture.image.size
        box = ", ".join(f"{v:.1f}" for v in to_pixel_boxes(story.box, w, h).tolist())
        target = (f"{picture.classes[story.target_class]}, box "
                  + ", ".join(f"{v:.1f}" for v in to_pixel_boxes(story.target_box, w, h).tolist())
                  if story.target_box is not None else "background")  # fmt: skip
        st.markdown(f"Anchor box (px): {box}  \nTarget: {target}")
        if story.ious.numel():
            st.dataframe({
                "object": [f"{g + 1}: {picture.classes[int(picture.labels[g])]}" for g in range(story.ious.numel())],
                "IoU with this anchor": [round(v, 4) for v in story.ious.tolist()],
            }, hide_index=True)  # fmt: skip


def _jaccard(match, anchors, picture: ui.Picture, threshold: float, selected: int | None) -> None:
    st.subheader("The Jaccard matrix")
    columns = None
    if len(anchors) > HEATMAP_ALL:
        levels = ["anchors that overlap an object"] + [f"level {lv} ({g}x{g})" for lv, g in enumerate(anchors.grids)]
        c1, c2 = st.columns([2, 3])
        choice = c1.selectbox("Columns", levels, key=keys.LEVEL, bind="query-params",
                              help=f"{len(anchors):,} anchors are too many columns to read; pick a part.")  # fmt: skip
        touching = (match.iou > 0).any(0)
        if choice == levels[0]:
            mask = touching
        else:
            lv = levels.index(choice) - 1
            mask = anchors.level == lv
            if int(mask.sum()) > HEATMAP_ALL and c2.toggle("Only the anchors that overlap an object", value=True,
                                                           key=keys.ONLY_TOUCHING):  # fmt: skip
                mask &= touching
        columns = torch.nonzero(mask).flatten()
        if columns.numel() > HEATMAP_MAX_COLUMNS:
            top = match.iou[:, columns].max(0).values.argsort(descending=True, stable=True)[:HEATMAP_MAX_COLUMNS]
            columns = columns[top.sort().values]
            st.caption(f"Showing the {HEATMAP_MAX_COLUMNS:,} of these {int(mask.sum()):,} anchors with the largest "
                       "IoU, in index order.")  # fmt: skip
        if columns.numel() == 0:
            st.info("No anchor of this part overlaps an object.")
            return
    fig = iou_heatmap(match.iou, anchors, picture.labels, picture.classes, columns, threshold, selected)
    ui.show_figure(fig, keys.HEATMAP_CHART, on_select=_on_click(keys.HEATMAP_CHART, len(anchors)),
                   selection_mode="points")  # fmt: skip
    st.caption(f"Cells outlined in red are above the threshold {threshold:g}. Click a cell to pick its anchor.")


def _lesson_check(match, name: str, threshold: float) -> None:
    with st.expander("Lesson check", icon=":material/school:", expanded=name == "lesson_4x4"):
        if name != "lesson_4x4":
            st.info("The lesson's numbers are for its 4x4 grid of 16 anchors: choose the lesson_4x4 anchors.")
            return
        ui.lesson_numbers(match, threshold)


main()

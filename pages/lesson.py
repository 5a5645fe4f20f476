"""Lesson walkthrough: the lesson's stages in order, each explained next to a live figure."""

import streamlit as st
import torch

from detviz.anchors import PRESETS
from detviz.data.targets import largest_object, multilabel_target
from detviz.figures import (
    anchor_overlay_figure,
    detections_figure,
    ground_truth_figure,
    loss_curves_figure,
    matching_figure,
    multilabel_figure,
)
from detviz.losses import loss_curve
from detviz.matching import match_anchors
from detviz.models import compatibility_problems
from detviz.postprocess import KEPT, SUPPRESSED
from pages import ui
from pages.ui import keys
from pages.ui.cache import image_uri

ui.ensure_entrypoint()

STAGES = (
    "1. Largest object",
    "2. Every class",
    "3. SSD on a 4x4 grid",
    "4. Matching",
    "5. Many scales",
    "6. BCE or focal",
    "7. NMS",
)
HEIGHT = 480


def _move(step: int) -> None:
    current = st.session_state.get(keys.STAGE) or STAGES[0]
    st.session_state[keys.STAGE] = STAGES[min(max(STAGES.index(current) + step, 0), len(STAGES) - 1)]


def main() -> None:
    st.title("Lesson walkthrough")
    index = ui.current_index() if st.session_state.get(keys.SELECTION) is not None else None
    stage = st.segmented_control("Stage", STAGES, default=STAGES[0], key=keys.STAGE, bind="query-params",
                                 required=True, width="stretch")  # fmt: skip
    row = st.columns([4, 1, 1], vertical_alignment="bottom")
    with row[0]:
        picture = ui.pick_picture(index, lesson="last")
    position = STAGES.index(stage)
    row[1].button("Back", icon=":material/arrow_back:", on_click=_move, args=(-1,), disabled=position == 0,
                  width="stretch")  # fmt: skip
    row[2].button("Next", icon=":material/arrow_forward:", on_click=_move, args=(1,), type="primary",
                  disabled=position == len(STAGES) - 1, width="stretch")  # fmt: skip
    if picture is None:
        st.info("No image to show.")
        return
    text, figure = st.columns([2, 3])
    [_largest, _multilabel, _grid, _matching, _multiscale, _losses, _nms][position](picture, text, figure)


def _largest(picture: ui.Picture, text, figure) -> None:
    largest = largest_object(picture.boxes, picture.labels, picture.difficult)
    with text:
        st.markdown(
            "The first model answers one question per image: **what is the biggest thing here, and where?** "
            "A pretrained backbone ends in 4 + C numbers: four for the box, one score per class. Training "
            "adds an L1 loss on the box to a cross-entropy loss on the class."
        )
        if largest is None:
            st.info("This image has no objects, so this model has nothing to learn from it.")
        else:
            box = picture.boxes[largest]
            w, h = picture.image.size
            share = float((box[2] - box[0]) * (box[3] - box[1])) / (w * h)
            st.metric("Target class", picture.classes[int(picture.labels[largest])])
            st.markdown(f"Target box (px): {', '.join(f'{v:.0f}' for v in box.tolist())}, "
                        f"{share:.0%} of the image.")  # fmt: skip
        st.caption("Its weakness: one object per image. The next stages lift that.")
    with figure:
        st.plotly_chart(ground_truth_figure(picture.image, picture.boxes, picture.labels, picture.classes,
                                            emphasis=largest, height=HEIGHT, encode=image_uri), key="lesson-largest")  # fmt: skip


def _multilabel(picture: ui.Picture, text, figure) -> None:
    target = multilabel_target(picture.labels, len(picture.classes))
    with text:
        st.markdown(
            "Next, **which classes are in the image?** One sigmoid per class and a binary cross-entropy "
            "each: C independent yes/no answers instead of one softmax choice, so an image can hold a dog "
            "*and* a person. Still no boxes, and two dogs look like one."
        )
        st.metric("Classes present", f"{int(target.sum())} of {len(picture.classes)}")
    with figure:
        st.plotly_chart(multilabel_figure(picture.classes, target), key="lesson-multilabel")
        st.plotly_chart(ground_truth_figure(picture.image, picture.boxes, picture.labels, picture.classes,
                                            height=HEIGHT - 120, encode=image_uri), key="lesson-multilabel-image")  # fmt: skip


def _grid(picture: ui.Picture, text, figure) -> None:
    anchors = ui.anchors_of(PRESETS["lesson_4x4"])
    outputs = len(picture.classes) + 1 + 4
    with text:
        st.markdown(
            "To find many objects, **cut the image into a 4x4 grid** and let every cell predict one object: "
            "its class scores (C + background) and four numbers that move and stretch the cell's square, "
            "its *anchor*. The head is a stride-2 convolution down to 4x4 with "
            f"{outputs} = {len(picture.classes)} + 1 + 4 channels."
        )
        st.metric("Anchors", len(anchors), help="4 x 4 cells, one square each")
        st.metric("Numbers the head predicts", f"{len(anchors) * outputs:,}", help=f"{len(anchors)} x {outputs}")
        mode = st.radio("Draw", ["grid", "level"], format_func={"grid": "grid lines", "level": "the 16 anchors"}.get,
                        horizontal=True, key=keys.LESSON_GRID_MODE)  # fmt: skip
    with figure:
        st.plotly_chart(anchor_overlay_figure(picture.image, anchors, mode, gt_boxes=picture.boxes,
                                              gt_labels=picture.labels, class_names=picture.classes, height=HEIGHT,
                                              encode=image_uri), key="lesson-grid")  # fmt: skip


def _matching(picture: ui.Picture, text, figure) -> None:
    anchors = ui.anchors_of(PRESETS["lesson_4x4"])
    with text:
        st.markdown(
            "Which cell should predict which object? **Matching**: every anchor takes the object it overlaps "
            "most (IoU, the Jaccard index); every object takes its best anchor whatever the overlap; other "
            "anchors count as positive only above a threshold. The rest learn *background*."
        )
        threshold = st.slider("Threshold (IoU)", 0.05, 0.95, 0.5, 0.05, key=keys.LESSON_THRESHOLD)
        match = match_anchors(picture.normalized, anchors.boxes, threshold)
        forced, positive = int(match.forced.sum()), int(match.positive.sum())
        st.markdown(f"**{positive}** positive anchors ({forced} forced), **{len(anchors) - positive}** background.")
        st.page_link(
            "pages/matching.py", label="Click through the rule on the Matching page", icon=":material/join_inner:"
        )
    with figure:
        st.plotly_chart(matching_figure(picture.image, anchors, match, 3, picture.boxes, picture.labels,
                                        picture.classes, height=HEIGHT, encode=image_uri), key="lesson-matching")  # fmt: skip


def _multiscale(picture: ui.Picture, text, figure) -> None:
    config = PRESETS["lesson_multiscale"]
    anchors = ui.anchors_of(config)
    with text:
        st.markdown(
            "One square per cell fits few objects. The lesson adds **grids of 4x4, 2x2 and 1x1 cells**, and "
            f"in each cell {len(config.zooms)} zooms x {len(config.shapes)} aspect ratios = "
            f"{anchors.shapes_per_level[0]} anchors. Each grid has its own head on a feature map of that size."
        )
        st.metric("Anchors", len(anchors), help=" + ".join(f"{g}x{g}x{k}" for g, k in zip(anchors.grids, anchors.shapes_per_level, strict=True)))  # fmt: skip
        level = st.radio("Level", range(len(anchors.grids)), horizontal=True, key=keys.LESSON_LEVEL,
                         format_func=lambda lv: f"{anchors.grids[lv]}x{anchors.grids[lv]}")  # fmt: skip
        match = match_anchors(picture.normalized, anchors.boxes, 0.5)
        st.markdown(
            f"At IoU 0.5 this image gets **{int(match.positive.sum())}** positive anchors out of {len(anchors)}."
        )
        st.page_link(
            "pages/anchors.py", label="Try your own grids and zooms on the Anchors page", icon=":material/grid_on:"
        )
    with figure:
        st.plotly_chart(anchor_overlay_figure(picture.image, anchors, "level", level, gt_boxes=picture.boxes,
                                              gt_labels=picture.labels, class_names=picture.classes,
                                              positive=match.positive, best_gt=match.best_gt, height=HEIGHT,
                                              encode=image_uri),
                        key="lesson-multiscale")  # fmt: skip


def _losses(picture: ui.Picture, text, figure) -> None:
    with text:
        st.markdown(
            "Of 189 anchors a handful are positive. With **binary cross-entropy** every confident "
            "background anchor still costs a little, and together they outweigh the few objects. "
            "**Focal loss** multiplies each element's BCE by (1 - p_t)^gamma: an element already right "
            "with p_t = 0.9 costs 100 times less at gamma = 2."
        )
        gamma = st.slider("gamma", 0.0, 5.0, 2.0, 0.5, key=keys.LESSON_GAMMA)
        st.page_link(
            "pages/losses.py", label="See the losses of a trained model on the Losses page", icon=":material/functions:"
        )
    p = torch.linspace(0.005, 0.995, 199)
    with figure:
        st.plotly_chart(loss_curves_figure(
            {"BCE": (p, loss_curve(p, "bce")), f"focal gamma={gamma:g}": (p, loss_curve(p, "focal", None, gamma))},
            {f"(1 - p_t)^{gamma:g}": (p, (1 - p) ** gamma)},
        ), key="lesson-losses")  # fmt: skip


def _nms(picture: ui.Picture, text, figure) -> None:
    checkpoints = ui.shipped_checkpoints()
    with text:
        st.markdown(
            "A trained model fires several anchors on the same object. **Non-maximum suppression** keeps "
            "the best-scoring box of each class and drops any box of that class overlapping it by more than "
            "an IoU limit; then the next best left, and so on."
        )
        if not checkpoints:
            st.info("No trained model is shipped yet (`make demo-checkpoint`), so there are no predictions to show.")
            return
        detector = ui.detector_of(next(iter(checkpoints.values())))
        if detector is None:
            return
        problems = compatibility_problems(detector.info, class_names=picture.classes)
        if problems:
            st.warning(f"The shipped model does not know this dataset's classes ({'; '.join(problems)}).")
            return
        nms_iou = st.slider("NMS IoU limit", 0.1, 1.0, 0.45, 0.05, key=keys.LESSON_NMS)
        score = st.slider("Score threshold", 0.05, 0.95, 0.3, 0.05, key=keys.LESSON_SCORE)
        (detections,) = detector.detect([picture.image], score, nms_iou, return_trace=True)
        trace = detections.trace
        kept, gone = int((trace.status == KEPT).sum()), int((trace.status == SUPPRESSED).sum())
        st.markdown(f"**{len(trace.status)}** boxes score above {score:g}; NMS keeps **{kept}** and drops {gone}.")
    with figure:
        st.plotly_chart(detections_figure(picture.image, trace, detector.classes, gt_boxes=picture.boxes,
                                          height=HEIGHT, encode=image_uri), key="lesson-nms-figure")  # fmt: skip


main()

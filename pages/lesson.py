"""Lesson walkthrough: the lesson's stages in order, each explained next to a trained model of
that stage (detviz.ladder), and the ladder of their val metrics at the end."""

import streamlit as st
import torch

from detviz.anchors import PRESETS
from detviz.boxes import to_pixel_boxes
from detviz.data.targets import multilabel_target
from detviz.evaluate.stages import multilabel_scores, paired_iou
from detviz.figures import (
    anchor_overlay_figure,
    class_probability_figure,
    grid_detections_figure,
    ground_truth_figure,
    largest_object_figure,
    loss_curves_figure,
    matching_figure,
    multilabel_figure,
)
from detviz.ladder import BY_FILE, LESSON_PRINTED, grid_report
from detviz.losses import loss_curve
from detviz.matching import match_anchors
from pages import ui
from pages.ui import keys, ladder
from pages.ui.cache import image_uri, record_thumbnail
from pages.ui.lesson_models import compare_stage, ladder_stage, nms_stage, val_map

ui.ensure_entrypoint()

STAGES = (
    "1. Largest object",
    "2. Every class",
    "3. SSD on a 4x4 grid",
    "4. Matching",
    "5. Many scales",
    "6. BCE or focal",
    "7. NMS",
    "The ladder",
)
HEIGHT = 480
GALLERY = 6  # worst val images shown at stage 1


def _move(step: int) -> None:
    current = st.session_state.get(keys.STAGE) or STAGES[0]
    st.session_state[keys.STAGE] = STAGES[min(max(STAGES.index(current) + step, 0), len(STAGES) - 1)]


def main() -> None:
    st.title("Lesson walkthrough")
    index = ui.current_index() if st.session_state.get(keys.SELECTION) is not None else None
    stage = st.segmented_control("Stage", STAGES, default=STAGES[0], key=keys.STAGE, bind="query-params",
                                 required=True, width="stretch")  # fmt: skip
    position = STAGES.index(stage)
    row = st.columns([4, 1, 1], vertical_alignment="bottom")
    with row[0]:
        picture = ui.pick_picture(index, lesson="first") if stage != STAGES[-1] else None
    row[1].button("Back", icon=":material/arrow_back:", on_click=_move, args=(-1,), disabled=position == 0,
                  width="stretch")  # fmt: skip
    row[2].button("Next", icon=":material/arrow_forward:", on_click=_move, args=(1,), type="primary",
                  disabled=position == len(STAGES) - 1, width="stretch")  # fmt: skip
    if stage == STAGES[-1]:
        ladder_stage()
        return
    if picture is None:
        st.info("No image to show.")
        return
    if picture.name == ui.LESSON_EXAMPLE and index is not None and len(index) and position not in (3, 4):
        st.button(f"The trained models know the demo's classes, not this drawing's: show {index.image_ids[0]}",
                  on_click=_use_image, args=(index.image_ids[0],), icon=":material/image:")  # fmt: skip
    text, figure = st.columns([2, 3])
    [_largest, _multilabel, _grid, _matching, _multiscale, _losses, nms_stage][position](picture, text, figure)


def _use_image(image_id: str) -> None:
    st.session_state[keys.IMAGE] = image_id


def _largest(picture: ui.Picture, text, figure) -> None:
    stage = BY_FILE["lesson_largest.pt"]
    k, target = ladder.largest_target(picture)
    with text:
        st.markdown(
            "The first model answers one question per image: **what is the biggest thing here, and where?** "
            "A backbone ends in 4 + C numbers: four for the box, one score per class. Training adds an L1 "
            "loss on the box to a cross-entropy loss on the class."
        )
        if k is None:
            st.info("This image has no objects, so this model has nothing to learn from it.")
        else:
            w, h = picture.image.size
            share = float((target[2] - target[0]) * (target[3] - target[1])) / (w * h)
            st.metric("Target class", picture.classes[int(picture.labels[k])])
            st.markdown(f"Target box (px): {', '.join(f'{v:.0f}' for v in target.tolist())}, "
                        f"{share:.0%} of the image.")  # fmt: skip
        chosen = ladder.stage_model(stage, picture, keys.LESSON_MODEL + stage.file)
        guess = chosen[1].predict([picture.image])[0] if chosen else None
        if guess is not None:
            st.metric("The model says", f"{picture.classes[guess.label]} ({guess.score:.0%})")
            if k is not None:
                iou = float(paired_iou(guess.box[None], target[None])[0])
                right_class = guess.label == int(picture.labels[k])
                st.metric("IoU of its box with the target box", f"{iou:.2f}")
                verdict = ("Right: the class and the box (IoU 0.5 or more)." if right_class and iou >= 0.5 else
                           f"Right class, but the box is off (IoU {iou:.2f} < 0.5)." if right_class else
                           f"Wrong: it says {picture.classes[guess.label]}; the largest object is a "
                           f"{picture.classes[int(picture.labels[k])]}.")  # fmt: skip
                (st.success if right_class and iou >= 0.5 else st.error)(verdict)
        st.caption("Its weakness: one object per image. The next stages lift that.")
    with figure:
        if guess is not None:
            fig = largest_object_figure(picture.image, target, None if k is None else int(picture.labels[k]), guess.box,
                                        guess.label, guess.score, picture.classes, HEIGHT, encode=image_uri)  # fmt: skip
        else:
            fig = ground_truth_figure(picture.image, picture.boxes, picture.labels, picture.classes, emphasis=k,
                                      height=HEIGHT, encode=image_uri)  # fmt: skip
        ui.show_figure(fig, "lesson-largest")
    if chosen:
        _largest_on_val(chosen[1])
    ladder.train_stage_now(stage, picture)


def _largest_on_val(model) -> None:
    val = ladder.val_index()
    result = ladder.scored("largest", model, val) if val else None
    if result is None:
        return
    s = result.scores
    printed = LESSON_PRINTED["lesson_largest.pt"]
    m = st.columns(3)
    m[0].metric(f"Class accuracy on {s.count} {val.split} images", f"{s.accuracy:.3f}",
                help=f"The lesson printed {printed['accuracy']:.3f} on Pascal VOC (pretrained ResNet34).")  # fmt: skip
    m[1].metric("Mean IoU with the target box", f"{s.mean_iou:.3f}")
    m[2].metric("Box L1 (image units)", f"{s.l1:.3f}",
                help=f"The lesson printed {printed['l1_pixels']:g} px at {printed['input']} px input, "
                     f"{printed['l1_pixels'] / printed['input']:.3f} in image units.")  # fmt: skip
    st.caption(f"The lesson printed accuracy {printed['accuracy']:.3f} and L1 {printed['l1_pixels']:g} px "
               f"({printed['l1_pixels'] / printed['input']:.3f} of the image) on Pascal VOC.")  # fmt: skip
    worst = sorted(range(s.count), key=lambda i: (bool(s.correct[i]), float(s.iou[i])))[:GALLERY]
    st.markdown(f"**Its worst {val.split} images** (wrong class first, then the lowest IoU): dashed, the model's "
                "box; solid, every object. Most hold several objects of similar size: which one is *the largest* "
                "is a close call.")  # fmt: skip
    columns = st.columns(GALLERY)
    index = val.index
    for column, i in zip(columns, worst, strict=False):
        record = index[result.positions[i]]
        box = to_pixel_boxes(result.boxes[i][None], record.width, record.height)
        boxes = torch.cat([record.boxes, box])
        labels = torch.cat([record.labels, result.labels[i][None]])
        dashed = torch.cat([torch.zeros(len(record.labels), dtype=torch.bool), torch.ones(1, dtype=torch.bool)])
        thumb = record_thumbnail(record, 200, boxes, labels, dashed)
        if thumb is not None:
            column.image(thumb, width="stretch")
        said = index.classes[int(result.labels[i])]
        column.caption(f"{record.image_id}: {record.num_objects} objects; says {said}, IoU {float(s.iou[i]):.2f}")


def _multilabel(picture: ui.Picture, text, figure) -> None:
    stage = BY_FILE["lesson_multilabel.pt"]
    target = multilabel_target(picture.labels, len(picture.classes))
    with text:
        st.markdown(
            "Next, **which classes are in the image?** One sigmoid per class and a binary cross-entropy "
            "each: C independent yes/no answers instead of one softmax choice, so an image can hold a dog "
            "*and* a person. Still no boxes, and two dogs look like one."
        )
        st.metric("Classes present", f"{int(target.sum())} of {len(picture.classes)}")
        chosen = ladder.stage_model(stage, picture, keys.LESSON_MODEL + stage.file)
        threshold = st.slider("Threshold", 0.05, 0.95, 0.5, 0.05, key=keys.LESSON_ML_THRESHOLD,
                              help="A class counts as present when its probability is at least this.")  # fmt: skip
    with figure:
        if chosen:
            probabilities = chosen[1].predict([picture.image])[0]
            ui.show_figure(class_probability_figure(picture.classes, probabilities, target, threshold),
                           "lesson-multilabel-probabilities")  # fmt: skip
            said = {picture.classes[c] for c in torch.nonzero(probabilities >= threshold).flatten().tolist()}
            truth = {picture.classes[c] for c in torch.nonzero(target).flatten().tolist()}
            (st.success if said == truth else st.warning)(
                "It names exactly the classes in the image." if said == truth else
                f"Missed: {', '.join(sorted(truth - said)) or 'none'}; wrongly named: {', '.join(sorted(said - truth)) or 'none'}."
            )  # fmt: skip
        else:
            ui.show_figure(multilabel_figure(picture.classes, target), "lesson-multilabel")
        ui.show_figure(ground_truth_figure(picture.image, picture.boxes, picture.labels, picture.classes,
                                           height=HEIGHT - 160, encode=image_uri), "lesson-multilabel-image")  # fmt: skip
    if chosen:
        val = ladder.val_index()
        probs = ladder.scored("multilabel", chosen[1], val) if val else None
        if probs is not None:
            s = multilabel_scores(*probs, threshold)
            m = st.columns(4)
            m[0].metric(f"Micro F1 on {len(probs[0])} {val.split} images", f"{s.f1:.3f}")
            m[1].metric("Precision", f"{s.precision:.3f}")
            m[2].metric("Recall", f"{s.recall:.3f}")
            printed = LESSON_PRINTED["lesson_multilabel.pt"]["accuracy"]
            m[3].metric(
                "Per-class accuracy", f"{s.accuracy:.3f}", help=f"The number the lesson printed: {printed:.4f}."
            )
            st.caption(f"At threshold {threshold:g}. The lesson printed only the per-class accuracy, {printed:.4f} on "
                       "Pascal VOC; with most classes absent from most images, accuracy flatters: F1 does not.")  # fmt: skip
    ladder.train_stage_now(stage, picture)


def _grid(picture: ui.Picture, text, figure) -> None:
    stage = BY_FILE["lesson_4x4_bce.pt"]
    anchors = ui.anchors_of(PRESETS["lesson_4x4"])
    outputs = len(picture.classes) + 1 + 4
    with text:
        st.markdown(
            "To find many objects, **cut the image into a 4x4 grid** and let every cell predict one object: "
            "its class scores (C + background) and four numbers that move and stretch the cell's square, "
            "its *anchor*. The head is a stride-2 convolution down to 4x4 with "
            f"{outputs} = {len(picture.classes)} + 1 + 4 channels."
        )
        m = st.columns(2)
        m[0].metric("Anchors", len(anchors), help="4 x 4 cells, one square each")
        m[1].metric("Numbers the head predicts", f"{len(anchors) * outputs:,}", help=f"{len(anchors)} x {outputs}")
        chosen = ladder.stage_model(stage, picture, keys.LESSON_MODEL + stage.file)
        if chosen:
            score = st.slider("Score threshold", 0.05, 0.95, 0.3, 0.05, key=keys.LESSON_GRID_SCORE)
            detector = chosen[1]
            (found,) = detector.detect([picture.image], score, return_trace=True)
            report = grid_report(detector.anchors.to("cpu"), ladder.as_normalized(found.boxes, picture),
                                        found.labels, found.anchor, picture.normalized, picture.labels)  # fmt: skip
            st.markdown(f"**{len(report.fired)}** of 16 cells fired (shaded); it found **{int(report.found.sum())}** "
                        f"of {len(report.found)} objects.")  # fmt: skip
            _misses(picture, report)
            val_map(detector, "4x4 model")
        else:
            mode = st.radio("Draw", ["grid", "level"], format_func={"grid": "grid lines", "level": "the 16 anchors"}.get,
                            horizontal=True, key=keys.LESSON_GRID_MODE)  # fmt: skip
    with figure:
        if chosen:
            fig = grid_detections_figure(picture.image, 4, found.trace, report.fired, detector.classes, picture.boxes,
                                         picture.labels, ~report.found, HEIGHT, encode=image_uri)  # fmt: skip
        else:
            fig = anchor_overlay_figure(picture.image, anchors, mode, gt_boxes=picture.boxes, gt_labels=picture.labels,
                                        class_names=picture.classes, height=HEIGHT, encode=image_uri)  # fmt: skip
        ui.show_figure(fig, "lesson-grid")
    ladder.train_stage_now(stage, picture)


WHY = {
    "small": "small: its best anchor overlaps it by only {iou:.2f}; a cell's one square is a quarter of the image",
    "shares a cell": "shares a cell with another object, and each cell predicts one object",
    "box or class off": "its cell had a fitting anchor (IoU {iou:.2f}), but the model got the box or class wrong",
}


def _misses(picture: ui.Picture, report) -> None:
    lines = [
        f"- {picture.classes[int(picture.labels[k])]} #{k + 1}: " + WHY[r].format(iou=float(report.best_anchor_iou[k]))
        for k, r in enumerate(report.reasons)
        if r
    ]
    if lines:
        st.markdown("**What it misses** (thick dashes):\n" + "\n".join(lines))


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
        if picture.name == ui.LESSON_EXAMPLE:
            ui.lesson_numbers(match, threshold)
        st.page_link(
            "pages/matching.py", label="Click through the rule on the Matching page", icon=":material/join_inner:"
        )
    with figure:
        ui.show_figure(matching_figure(picture.image, anchors, match, 3, picture.boxes, picture.labels,
                                       picture.classes, height=HEIGHT, encode=image_uri), "lesson-matching")  # fmt: skip


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
        ui.show_figure(anchor_overlay_figure(picture.image, anchors, "level", level, gt_boxes=picture.boxes,
                                             gt_labels=picture.labels, class_names=picture.classes,
                                             positive=match.positive, best_gt=match.best_gt, height=HEIGHT,
                                             encode=image_uri),
                       "lesson-multiscale")  # fmt: skip
    compare_stage(picture, ("lesson_4x4_bce.pt", "lesson_multiscale_bce.pt"), losses=False)


def _losses(picture: ui.Picture, text, figure) -> None:
    with text:
        st.markdown(
            "Of the 189 anchors a handful are positive. With **binary cross-entropy** every confident "
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
        ui.show_figure(loss_curves_figure(
            {"BCE": (p, loss_curve(p, "bce")), f"focal gamma={gamma:g}": (p, loss_curve(p, "focal", None, gamma))},
            {f"(1 - p_t)^{gamma:g}": (p, (1 - p) ** gamma)},
        ), "lesson-losses")  # fmt: skip
    compare_stage(picture, ("lesson_multiscale_bce.pt", "lesson_multiscale_focal.pt"), losses=True)


main()

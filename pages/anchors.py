"""Anchors: what a configuration of grids, zooms and shapes puts on an image, and how well it
covers every object of the dataset."""

import streamlit as st
import torch

from detviz.anchors import PRESETS
from detviz.boxes import to_pixel_boxes
from detviz.coverage import coverage_by_class, coverage_by_size, worst_covered
from detviz.figures import anchor_overlay_figure, coverage_figure
from detviz.matching import match_anchors
from pages import ui
from pages.ui import keys
from pages.ui.cache import image_uri

ui.ensure_entrypoint()

OVERLAYS = {"grid": "grid lines of every level", "level": "every anchor of one level", "cell": "the shapes of one cell"}
# option names double as URL values (?overlay=cell); the descriptions are captions


def main() -> None:
    st.title("Anchors")
    st.caption("Every anchor is a box the detector predicts relative to: it can only find an object "
               "well if some anchor overlaps it enough.")  # fmt: skip
    index = ui.current_index()
    config, name = ui.anchor_picker()
    anchors = ui.anchors_of(config)
    cols = st.columns(4)
    cols[0].metric("Anchors", f"{len(anchors):,}")
    cols[1].metric("Levels", len(anchors.grids), help="grids: " + ", ".join(f"{g}x{g}" for g in anchors.grids))
    cols[2].metric("Shapes per cell", " / ".join(map(str, anchors.shapes_per_level)))
    threshold = cols[3].slider("Matching threshold (IoU)", 0.1, 0.9, 0.5, 0.05, key=keys.IOU, bind="query-params")
    st.session_state[keys.DESIGNED_ANCHORS] = (name, config.to_dict())  # the Train form can train on them
    st.download_button("Download these anchors as JSON", data=config.to_json, file_name=f"anchors-{name}.json",
                       mime="application/json", on_click="ignore", icon=":material/download:", key=keys.ANCHORS_JSON,
                       help="The file `python -m detviz.train --anchors FILE` reads. The Train page can also use "
                       "these anchors directly: Anchors → 'from the Anchors page'.")  # fmt: skip

    left, right = st.columns([3, 2])
    with right:
        overlay = st.radio("Show", list(OVERLAYS), captions=list(OVERLAYS.values()), key=keys.OVERLAY,
                           bind="query-params")  # fmt: skip
        level = row = col = 0
        if overlay != "grid":
            level = ui.level_picker(anchors)
        if overlay == "cell":
            g = anchors.grids[level]
            row, col = (_cell_slider(name, key, g) for name, key in (("Row", keys.ROW), ("Column", keys.COL)))
        picture = ui.pick_picture(index, lesson="first")
        show_matches = st.toggle("Anchors matched to each object", value=True, key=keys.SHOW_MATCHED)
    with left:
        if picture is None:
            st.info("No image to show.")
        else:
            match = match_anchors(picture.normalized, anchors.boxes, threshold) if show_matches else None
            fig = anchor_overlay_figure(
                picture.image, anchors, overlay, level, row, col, picture.boxes, picture.labels, picture.classes,
                positive=match.positive if match is not None else None, best_gt=match.best_gt if match is not None else None,
                encode=image_uri,
            )  # fmt: skip
            ui.show_figure(fig, "anchor-overlay")
            if match is not None and picture.boxes.shape[0]:
                per_object = [int((match.positive & (match.best_gt == g)).sum()) for g in range(picture.boxes.shape[0])]
                st.caption("Positive anchors per object: " + ", ".join(
                    f"{g + 1} ({picture.classes[int(picture.labels[g])]}): {n}" for g, n in enumerate(per_object)))  # fmt: skip
            elif picture.boxes.shape[0] == 0:
                st.caption("This image has no objects: every anchor is background.")

    if index is not None:
        coverage_section(index, config, name, threshold)


def _cell_slider(label: str, key: str, grid: int) -> int:
    """A row or column of the level's grid (?row=, ?col=), kept inside the grid when it changes."""
    if grid == 1:
        return 0
    if key in st.session_state and st.session_state[key] is not None and st.session_state[key] > grid - 1:
        st.session_state[key] = grid - 1
    return st.slider(label, 0, grid - 1, grid // 2, key=key, bind="query-params")


def coverage_section(index, config, name: str, threshold: float) -> None:
    st.subheader("How well the anchors cover the dataset")
    st.caption(f"For each object, its best IoU with any anchor. An object whose best IoU is at most {threshold:g} "
               "only gets its forced anchor: the share of those bounds what the detector can find.")  # fmt: skip
    compare = st.multiselect("Compare with", list(PRESETS), default=["lesson_4x4", "ssd300"], key=keys.COMPARE,
                             bind="query-params")  # fmt: skip
    configs = {name: config} | {p: PRESETS[p] for p in compare if p != name}
    coverages = {n: ui.coverage_of(c) for n, c in configs.items()}
    if any(c is None for c in coverages.values()):
        return
    ui.show_figure(coverage_figure({n: c.best_iou for n, c in coverages.items()}, threshold), "coverage")
    summary = {
        "anchors": [c.num_anchors for c in coverages.values()],
        f"objects with best IoU <= {threshold:g}": [f"{c.share_below(threshold):.1%}" for c in coverages.values()],
        "mean best IoU": [f"{float(c.best_iou.mean()):.3f}" if c.best_iou.numel() else "-" for c in coverages.values()],
    }
    st.dataframe({"configuration": list(coverages), **summary}, hide_index=True)
    by_class, by_size = st.columns(2)
    with by_class:
        st.markdown("**Share of objects left to a forced anchor, by class**")
        st.dataframe(_table([coverage_by_class(c, index.classes, threshold) for c in coverages.values()], list(coverages)),
                     hide_index=True)  # fmt: skip
    with by_size:
        st.markdown("**... by object size** (side as a share of the image's)")
        st.dataframe(
            _table([coverage_by_size(c, threshold) for c in coverages.values()], list(coverages)), hide_index=True
        )
    worst_gallery(index, coverages[name], config, name)


def _table(rows_per_config: list, names: list[str]) -> dict[str, list]:
    table = {"group": [r.group for r in rows_per_config[0]], "objects": [r.objects for r in rows_per_config[0]]}
    for name, rows in zip(names, rows_per_config, strict=True):
        table[name] = [f"{r.share_below:.0%}" if r.objects else "-" for r in rows]
    return table


def worst_gallery(index, coverage, config, name: str) -> None:
    if not st.toggle(f"Show the objects {name} covers worst, with their best anchor (dashed)", key=keys.SHOW_WORST):
        return
    anchors = ui.anchors_of(config)
    cols = st.columns(6)
    for k, obj in enumerate(worst_covered(coverage, 12).tolist()):
        image_pos = int(coverage.image[obj])
        record = index[image_pos]
        local = obj - int(index.offsets[image_pos])
        anchor_box = to_pixel_boxes(anchors.boxes[int(coverage.best_anchor[obj])][None], record.width, record.height)
        boxes = torch.cat([record.boxes[local : local + 1], anchor_box])
        labels = record.labels[local : local + 1].repeat(2)
        thumb = ui.record_thumbnail(record, 200, boxes, labels, torch.tensor([False, True]))
        if thumb is None:  # a broken image: the gallery goes on without it
            continue
        cols[k % 6].image(thumb, width="stretch", caption=f"{record.image_id}: {index.classes[int(labels[0])]}, "
                          f"best IoU {float(coverage.best_iou[obj]):.2f}")  # fmt: skip


main()

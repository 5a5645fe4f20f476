"""Overview: what is in the chosen dataset, at a glance."""

import streamlit as st

from detviz.data.stats import summarize
from detviz.figures import class_count_figure, histogram_figure
from pages import ui

ui.ensure_entrypoint()


def main() -> None:
    st.title("Dataset overview")
    index = ui.current_index()
    if index is None:
        return
    st.caption(index.source)
    s = summarize(index)
    cols = st.columns(6)
    cols[0].metric("Images", f"{s.num_images:,}")
    cols[1].metric("Objects", f"{s.num_objects:,}")
    cols[2].metric("Classes", index.num_classes)
    cols[3].metric(
        "Difficult",
        f"{s.num_difficult:,}",
        help="VOC 'difficult' objects: left out of mAP by default.",
    )
    cols[4].metric("Truncated", f"{s.num_truncated:,}", help="Objects cut by the image border.")
    cols[5].metric("Images without objects", f"{s.images_without_objects:,}")

    left, right = st.columns(2)
    ui.show_figure(class_count_figure(index.classes, s.class_counts, s.class_difficult), "classes", left)
    ui.show_figure(
        histogram_figure(s.objects_per_image, "Objects per image", "objects", integer=True), "per_image", right
    )
    left, right = st.columns(2)
    ui.show_figure(
        histogram_figure(s.relative_size, "Object size", "sqrt(box area / image area)", bins=40), "size", left
    )
    ui.show_figure(
        histogram_figure(
            s.aspect_ratio,
            "Object aspect ratio",
            "width / height (log scale)",
            bins=40,
            log_x=True,
        ),
        "aspect",
        right,
    )
    st.markdown(
        "Anchors have to cover these sizes and shapes: an object whose side is a tenth of the image "
        "overlaps a 4x4 grid cell (a quarter of the image) with IoU of at most 0.16, and a tall thin "
        "object fits no square anchor well. Those are the objects a detector with few anchors misses."
    )


main()

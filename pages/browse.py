"""Browse: a filtered thumbnail grid; open an image to see its ground truth, the lesson's
first-stage targets (largest object, multi-label) and augmented copies."""

import math

import streamlit as st

from detviz.data import DataError, DatasetIndex, ImageRecord
from detviz.data.stats import filter_images
from detviz.data.targets import largest_object, multilabel_target
from detviz.figures import ground_truth_figure, multilabel_figure, render_thumbnail
from pages import ui
from pages.ui import keys
from pages.ui.cache import image_uri

ui.ensure_entrypoint()

GRID_COLUMNS = 6
# option label (also its URL value) -> filter_images(difficult=...)
DIFFICULT_OPTIONS = {"any": "any", "has difficult": "with", "no difficult": "without"}


def main() -> None:
    st.title("Browse")
    index = ui.current_index()
    if index is None:
        return
    shown = _filters(index)
    image_id = st.selectbox(
        "Image",
        index.image_ids,
        index=None,
        key=keys.IMAGE,
        bind="query-params",
        placeholder="Type an image id, or open one from the grid",
    )
    if image_id is None:
        _grid(index, shown)
    else:
        _detail(index, index.position_of(image_id), shown)


def _filters(index: DatasetIndex) -> list[int]:
    most = max(1, int(index.objects_per_image().max()))
    with st.expander("Filters", icon=":material/filter_list:"):
        c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
        classes = c1.multiselect(
            "Classes", index.classes, key=keys.CLASSES, bind="query-params", placeholder="all classes"
        )
        objects = c2.slider("Objects per image", 0, most, (0, most), key=keys.OBJECTS, bind="query-params")
        size = c3.slider(
            "Object size",
            0.0,
            1.0,
            (0.0, 1.0),
            step=0.01,
            key=keys.SIZE,
            bind="query-params",
            help="sqrt(box area / image area) of at least one object (of the chosen classes).",
        )
        difficult = c4.selectbox(
            "Difficult objects",
            list(DIFFICULT_OPTIONS),
            key=keys.DIFFICULT,
            bind="query-params",
            help="VOC marks hard-to-recognise objects 'difficult'; mAP ignores them by default.",
        )
    labels = [index.classes.index(c) for c in classes] if classes else None
    return filter_images(index, labels, objects[0], objects[1], size, DIFFICULT_OPTIONS[difficult]).tolist()


def _open(image_id: str | None) -> None:
    st.session_state[keys.IMAGE] = image_id


def _grid(index: DatasetIndex, shown: list[int]) -> None:
    ui.import_in_background("detviz.data.dataset")  # ready by the time an image is opened
    if not shown:
        st.info("No image matches the filters.")
        return
    c1, c2, c3 = st.columns([1, 1, 4], vertical_alignment="bottom")
    per_page = c1.selectbox("Per page", [12, 24, 48], index=1, key=keys.PAGE_SIZE, bind="query-params")
    pages = math.ceil(len(shown) / per_page)
    if st.session_state.get(keys.PAGE, 1) > pages:
        st.session_state[keys.PAGE] = pages
    page = c2.number_input("Page", 1, pages, 1, key=keys.PAGE, bind="query-params")
    c3.caption(f"{len(shown):,} of {len(index):,} images · page {page} of {pages}")
    chunk = shown[(page - 1) * per_page : page * per_page]
    for row in range(0, len(chunk), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, position in zip(cols, chunk[row : row + GRID_COLUMNS], strict=False):
            record = index[position]
            thumb = ui.record_thumbnail(record)
            with col:
                if thumb is None:
                    st.error(f"{record.image_id}: cannot read {record.image_path.name}")
                else:
                    st.image(thumb, width="stretch")
                st.button(
                    f"{record.image_id} · {record.num_objects} obj.",
                    key=f"{keys.OPEN_IMAGE}{position}",
                    width="stretch",
                    on_click=_open,
                    args=(record.image_id,),
                    help="Open this image",
                )


def _detail(index: DatasetIndex, position: int, shown: list[int]) -> None:
    record = index[position]
    order = shown if position in shown else list(range(len(index)))
    k = order.index(position)
    c1, c2, c3, c4 = st.columns([1.2, 1, 1, 4], vertical_alignment="center")
    c1.button("All images", icon=":material/grid_view:", on_click=_open, args=(None,))
    c2.button(
        "Previous",
        icon=":material/chevron_left:",
        disabled=k == 0,
        on_click=_open,
        args=(index.image_ids[order[max(k - 1, 0)]],),
    )
    c3.button(
        "Next",
        icon=":material/chevron_right:",
        disabled=k == len(order) - 1,
        on_click=_open,
        args=(index.image_ids[order[min(k + 1, len(order) - 1)]],),
    )
    filtered = order is shown and len(shown) < len(index)
    c4.caption(f"image {k + 1} of {len(order):,}" + (" matching the filters" if filtered else ""))

    t1, t2 = st.columns(2)
    show_largest = t1.toggle(
        "Largest object (lesson stage 1: one class + one box)", key=keys.SHOW_LARGEST, bind="query-params"
    )
    show_multilabel = t2.toggle(
        "Multi-label (lesson stage 2: which classes are present)", key=keys.SHOW_MULTILABEL, bind="query-params"
    )
    largest = largest_object(record.boxes, record.labels, record.difficult)

    left, right = st.columns([3, 2])
    with left:
        try:
            image = ui.record_image(record)
        except DataError as e:
            st.error(str(e))
            image = None
        if image is not None:
            fig = ground_truth_figure(
                image,
                record.boxes,
                record.labels,
                index.classes,
                record.difficult,
                record.truncated,
                emphasis=largest if show_largest else None,
                title=f"{record.image_id} · {record.width}x{record.height} px · {record.num_objects} objects",
                encode=image_uri,
            )
            ui.show_figure(fig, "detail-figure")
    with right:
        st.markdown(f"**{record.image_path.name}**  \n{record.image_path.parent}")
        if show_largest:
            _largest_summary(index, record, largest)
        if show_multilabel:
            st.markdown("**Multi-label target** (1 = the class appears in the image)")
            ui.show_figure(
                multilabel_figure(index.classes, multilabel_target(record.labels, index.num_classes)),
                "multilabel-figure",
                config={"displayModeBar": False},
            )
        st.dataframe(_object_table(index, record), hide_index=True, height="auto")
    if image is not None:
        _augmentation_preview(index, position)


def _largest_summary(index: DatasetIndex, record: ImageRecord, largest: int | None) -> None:
    if largest is None:
        st.info("No objects: a largest-object model has no target for this image.")
        return
    x1, y1, x2, y2 = record.boxes[largest].tolist()
    st.success(
        f"**Largest object:** #{largest + 1}, {index.classes[int(record.labels[largest])]}, "
        f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px, {(x2 - x1) * (y2 - y1):,.0f} px²"
    )


def _object_table(index: DatasetIndex, record: ImageRecord) -> dict[str, list]:
    rows = record.boxes.tolist()
    flags = [
        ", ".join(name for name, on in (("difficult", d), ("truncated", t)) if on)
        for d, t in zip(record.difficult.tolist(), record.truncated.tolist(), strict=True)
    ]
    return {
        "#": list(range(1, record.num_objects + 1)),
        "class": [index.classes[int(c)] for c in record.labels],
        "box x1, y1, x2, y2 (px)": [", ".join(f"{v:g}" for v in r) for r in rows],
        "w x h": [f"{r[2] - r[0]:g} x {r[3] - r[1]:g}" for r in rows],
        "flags": flags,
    }


def _augmentation_preview(index: DatasetIndex, position: int) -> None:
    # torchvision takes ~2 s to import; the grid starts that import in the background (see _grid)
    from detviz.data.dataset import augmented_copies, sample_to_pil

    with st.expander(
        "Augmentation preview: the same image as training sees it",
        icon=":material/auto_awesome:",
    ):
        c1, c2, c3 = st.columns(3)
        copies = c1.slider("Copies", 2, 8, 4, key=keys.AUGMENT_COPIES)
        seed = c2.number_input("Seed", 0, 10_000, 0, key=keys.AUGMENT_SEED)
        size = c3.selectbox("Model input size", [224, 300, 320], key=keys.AUGMENT_SIZE)
        st.caption(
            "Colour jitter, zoom-out, SSD-style IoU crop and horizontal flip, then a squeeze to "
            f"{size}x{size}. Boxes follow every step. An IoU crop drops the objects whose centre it cuts "
            "off, and boxes cut to under 2 px are dropped too, with their labels."
        )
        try:
            samples = augmented_copies(index, position, copies, size, seed)
        except DataError as e:
            st.error(str(e))
            return
        cols = st.columns(min(copies, 4))
        for j, sample in enumerate(samples):
            image, boxes = sample_to_pil(sample)
            thumb = render_thumbnail(image, boxes, sample.labels, sample.difficult, size=size)
            cols[j % len(cols)].image(
                thumb,
                caption=f"copy {j + 1}: {len(sample.labels)} boxes",
                width="stretch",
            )


main()

"""Widgets the pages share: the URL plumbing (the opening link's parameters, the copy-link
popover), figures with their export buttons, the anchor and level pickers, and the live pages'
threshold sliders."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from pages.ui import keys
from pages.ui.cache import anchors_of

if TYPE_CHECKING:  # the pickers import detviz's anchors and post-processing (torch) when used: the
    # URL plumbing and show_figure are on a fresh server's first page, which needs no torch
    from detviz.anchors import AnchorConfig, Anchors

NMS_STEPS = tuple(round(0.05 * k, 2) for k in range(1, 21))  # the NMS slider's values
LIVE_FLOOR = 0.01  # the lowest score threshold the live pages offer; candidates below it are not kept

SUBSETS = {"first 100 images": 100, "first 500 images": 500, "all images": 1 << 30}  # URL values of ?subset=


def requested_params() -> dict[str, list[str]]:
    """The query parameters of the link that opened this session (empty on later runs)."""
    if st.session_state.get(keys.URL_CHECKED):
        return {}
    st.session_state[keys.URL_CHECKED] = True
    return {k: st.query_params.get_all(k) for k in st.query_params}


def report_dropped_params(requested: dict[str, list[str]], slot) -> None:
    """Says which parameters of the opening link were not valid values for their widgets.

    Streamlit drops such values silently and shows the widget's default; a link-follower
    should know their link was not honoured. Parameters equal to a widget's default are
    dropped too, and are not reported.
    """
    dropped = []
    for key, values in requested.items():
        if key not in st.session_state or st.query_params.get_all(key) == values:
            continue
        if not _same_value(values, st.session_state[key]):
            dropped.append(f"{key}={','.join(values)}")
    if dropped:
        slot.warning(
            "The link asked for " + ", ".join(dropped) + ", which "
            + ("is not a valid value" if len(dropped) == 1 else "are not valid values")
            + " here (a missing image, or a value out of range): showing the defaults instead.",
            icon=":material/link_off:",
        )  # fmt: skip


def _same_value(requested: list[str], value: object) -> bool:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) != len(requested):
        return False
    for text, v in zip(requested, values, strict=True):
        if isinstance(v, bool):
            if text.lower() != str(v).lower():
                return False
        elif isinstance(v, (int, float)):
            try:
                number = float(text)
            except ValueError:
                return False
            # nan compares unequal to everything, so without the isfinite test "nan" would pass
            # for any value and its reset go unreported; no widget holds nan or inf
            if not math.isfinite(number) or abs(number - v) > 1e-9 * max(1.0, abs(v)):
                return False
        elif text != str(v):
            return False
    return True


def share_link(container=st) -> None:
    """A "copy link" popover with the address of this view: the page and its query parameters.

    The bound widgets' values come from the widgets, not from st.query_params: Streamlit's
    browser side sends a rerun with the address it had *before* it wrote a moved widget's value
    there, so st.query_params can lag one change behind the view.
    """
    pairs = link_params({k: st.query_params.get_all(k) for k in st.query_params}, _bound_widget_values())
    base = st.context.url or ""
    link = f"{base}?{urlencode(pairs)}" if pairs else base
    with container.popover("Copy link", icon=":material/link:"):
        st.caption("The address of this view: open it (or send it) to come back to exactly this.")
        st.code(link or "(the address appears once the page is open in a browser)", language=None, wrap_lines=True)


def link_params(query: dict[str, list[str]], widgets: dict[str, object]) -> list[tuple[str, str]]:
    """The (name, value) pairs of a link to this view: each bound widget's value (defaults too, so
    the link pins them), then the other parameters as the address has them, in address order."""
    names = [*query, *(k for k in widgets if k not in query)]
    return [(k, v) for k in names for v in (url_values(widgets[k]) if k in widgets else query[k])]


def url_values(value: object) -> list[str]:
    """A widget's value as Streamlit spells it in the address: one string per value (a list, a
    range), none for no value (None, "", []); true/false; 5.0 as 5."""
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in url_values(item)]
    if value is None or value == "":
        return []
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return [str(int(value))]
    return [str(value)]


def _bound_widget_values() -> dict[str, object]:
    """The current value of each widget bound to a query parameter on this page (or the sidebar)."""
    ctx = get_script_run_ctx()
    if ctx is None:
        return {}
    here = {ctx.page_script_hash, ctx.pages_manager.main_script_hash}  # not another page's leftovers
    names = [k for k in st.session_state if isinstance(k, str)]  # read before taking the state's lock
    with ctx.session_state.query_params() as params:
        bindings = {k: params.get_binding_for_param(k) for k in names}
    return {k: st.session_state.get(k) for k, b in bindings.items() if b is not None and b.script_hash in here}


def show_figure(fig, name: str, container=st, **kwargs):
    """st.plotly_chart with the export a user expects: the camera icon saves a PNG named after
    the figure (2x scale), and a button below saves it as a standalone HTML file (plotly.js
    inside, so it opens offline). `name` is the chart's key unless `key` is given; other keyword
    arguments go to st.plotly_chart (on_select, selection_mode, ...), a `config` merged into ours."""
    config = {"toImageButtonOptions": {"filename": name, "scale": 2}, "displaylogo": False} | kwargs.pop("config", {})
    result = container.plotly_chart(fig, key=kwargs.pop("key", name), config=config, **kwargs)
    container.download_button(
        "HTML", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True), file_name=f"{name}.html",
        mime="text/html", on_click="ignore", icon=":material/download:", key=name + keys.FIGURE_HTML, type="tertiary",
        help="Save this figure as an interactive HTML file (the camera icon on the figure saves a PNG).",
    )  # fmt: skip
    return result


def anchor_picker(default: str = "lesson_multiscale") -> tuple[AnchorConfig, str]:
    """A preset (or custom grids, zooms and shapes) bound to the URL; bad custom input falls back."""
    from detviz.anchors import PRESETS, config_text, parse_anchor_text

    options = [*PRESETS, "custom"]
    preset = st.selectbox(
        "Anchors",
        options,
        index=options.index(default),
        key=keys.PRESET,
        bind="query-params",
        help="The lesson's presets, SSD300's 8,732 default boxes, or your own grid.",
    )
    if preset != "custom":
        return PRESETS[preset], preset
    grids, zooms, shapes = config_text(PRESETS["lesson_multiscale"])
    c1, c2, c3 = st.columns(3)
    grids = c1.text_input("Grids (cells per side)", grids, key=keys.GRIDS, bind="query-params")
    zooms = c2.text_input("Zooms", zooms, key=keys.ZOOMS, bind="query-params")
    shapes = c3.text_input("Shapes (width x height)", shapes, key=keys.SHAPES, bind="query-params")
    try:
        config = parse_anchor_text(grids, zooms, shapes)
        anchors_of(config)  # make_anchors refuses boxes that are not finite or absurd (zoom 1e30)
    except ValueError as e:
        st.error(f"{e} Showing lesson_multiscale instead.")
        return PRESETS["lesson_multiscale"], "lesson_multiscale"
    return config, "custom"


def anchor_input(num_anchors: int) -> int | None:
    """The selected anchor (?anchor=), set by typing or by a click on a figure; None for none."""
    current = st.session_state.get(keys.ANCHOR)
    if current is not None and not 0 <= current < num_anchors:
        st.session_state[keys.ANCHOR] = None  # the anchors changed under it
    return st.number_input(
        "Selected anchor", min_value=0, max_value=num_anchors - 1, value=None, step=1, key=keys.ANCHOR,
        bind="query-params", placeholder="click an anchor, or type its index",
    )  # fmt: skip


def level_picker(anchors: Anchors, container=st) -> int:
    """A level selector bound to ?level=, its options (and URL values) the grids: "38x38"."""
    names = []
    for lv, g in enumerate(anchors.grids):
        name = f"{g}x{g}"
        names.append(name if name not in names else f"{name} (level {lv})")
    choice = container.selectbox("Level", names, key=keys.LEVEL, bind="query-params",
                                 help="Anchor levels from the finest grid to the coarsest.")  # fmt: skip
    return names.index(choice)


def subset_picker(container=st) -> int:
    """How many images the live mAP uses (?subset=)."""
    choice = container.selectbox("Images scored", list(SUBSETS), index=0, key=keys.SUBSET, bind="query-params",
                                 help="The live mAP runs the model once over these images of the sidebar's "
                                      "split, then re-scores them at every slider move.")  # fmt: skip
    return SUBSETS[choice]


def threshold_sliders(classes: list[str], default_score: float = 0.25) -> tuple[float, float, int, float, list[int]]:
    """Score threshold, NMS IoU, max detections, evaluation IoU and the classes shown, bound to the URL."""
    from detviz.postprocess import DEFAULT_NMS_IOU

    c = st.columns([1, 1, 1, 1, 2])
    score = c[0].slider("Score threshold", LIVE_FLOOR, 0.99, default_score, 0.01, key=keys.SCORE, bind="query-params",
                        help="Candidates scoring at or below this are dropped before NMS.")  # fmt: skip
    nms = c[1].slider("NMS IoU", NMS_STEPS[0], NMS_STEPS[-1], DEFAULT_NMS_IOU, 0.05, key=keys.NMS_IOU, bind="query-params",
                      help="A box overlapping a better box of its class by more than this is suppressed "
                           "(1: no suppression).")  # fmt: skip
    max_dets = c[2].slider("Max detections", 1, 200, 100, 1, key=keys.MAX_DETS, bind="query-params",
                           help="Detections kept per image, best first.")  # fmt: skip
    eval_iou = c[3].slider("Evaluation IoU", 0.1, 0.95, 0.5, 0.05, key=keys.EVAL_IOU, bind="query-params",
                           help="A detection is a true positive above this IoU with an object of its class.")  # fmt: skip
    only = c[4].multiselect("Classes", classes, key=keys.ONLY, bind="query-params", placeholder="all classes",
                            help="Show and score only these classes.")  # fmt: skip
    # slider floats (0.15000000000000002) rounded to the values offered: the NMS cache is keyed on them
    return round(score, 2), round(nms, 2), max_dets, round(eval_iou, 2), [classes.index(n) for n in only]

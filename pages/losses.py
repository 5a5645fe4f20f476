"""Losses: BCE against focal loss, as curves and on a real model's predictions for one image."""

import streamlit as st
import torch

from detviz.figures import loss_curves_figure, p_t_histogram
from detviz.figures.report import LOSS_VIEWS, compare_losses, focal_curves, loss_map, loss_shares_figure
from detviz.losses import EASY_P_T, loss_curve, synthetic_outputs
from detviz.matching import DEFAULT_IOU_THRESHOLD, match_anchors
from detviz.models import compatibility_problems
from pages import ui
from pages.ui import keys
from pages.ui.cache import image_uri

ui.ensure_entrypoint()

VIEWS = LOSS_VIEWS  # also the URL values of ?lossview=
SYNTHETIC = "synthetic logits"
# the first choice: focal-trained (the caption's story), the lesson's 189 anchors before SSD300's
DEFAULT_SOURCES = ("lesson_multiscale_focal.pt", "demo_focal.pt")


def main() -> None:
    st.title("Losses")
    st.caption("Almost every anchor is background. Under BCE those many easy negatives can add up to much of "
               "the loss; focal loss turns each one down by (1 - p_t)^gamma, so the hard anchors drive training. "
               "Below: how much, for a model's predictions on one image.")  # fmt: skip
    c1, c2 = st.columns(2)
    alpha = c1.slider("alpha (weight of the object class; background gets 1 - alpha)", 0.05, 0.95, 0.25, 0.05,
                      key=keys.ALPHA, bind="query-params")  # fmt: skip
    gamma = c2.slider("gamma (how hard easy elements are turned down)", 0.0, 5.0, 2.0, 0.5, key=keys.GAMMA,
                      bind="query-params")  # fmt: skip
    _curves(alpha, gamma)
    st.divider()
    _on_predictions(alpha, gamma)


def _curves(alpha: float, gamma: float) -> None:
    ui.show_figure(loss_curves_figure(*focal_curves(alpha, gamma)), "loss-curves")
    easy, hard = torch.tensor([0.9]), torch.tensor([0.1])
    ratio_easy = float(loss_curve(easy, "bce") / loss_curve(easy, "focal", alpha, gamma, positive=False))
    ratio_hard = float(loss_curve(hard, "bce") / loss_curve(hard, "focal", alpha, gamma, positive=False))
    m1, m2 = st.columns(2)
    m1.metric("An easy background element (p_t = 0.9) weighs", f"{ratio_easy:,.0f}x less",
              help="BCE loss / focal loss at p_t = 0.9 for a background element.")  # fmt: skip
    m2.metric("A hard one (p_t = 0.1) weighs", f"{ratio_hard:,.1f}x less",
              help="BCE loss / focal loss at p_t = 0.1 for a background element.")  # fmt: skip


def _on_predictions(alpha: float, gamma: float) -> None:
    st.subheader("Where the loss comes from, anchor by anchor")
    index = ui.current_index()
    checkpoints, _ = ui.detector_choices()  # the shipped detectors, then the training runs' best ones
    sources = [*checkpoints, SYNTHETIC]
    first = next((sources.index(name) for name in DEFAULT_SOURCES if name in sources), 0)
    c1, c2 = st.columns([1, 2])
    source = c1.selectbox("Predictions from", sources, index=first, key=keys.CHECKPOINT, bind="query-params",
                          help="A detector shipped in checkpoints/ (a focal-trained one first), the best "
                               "checkpoint of a training run (run:<name>), or made-up logits of a chosen "
                               "confidence.")  # fmt: skip
    if not checkpoints:
        st.info("No checkpoint is shipped yet (`make demo-checkpoint` trains them) and no training run has one: "
                "only synthetic logits, which are made up, not a model's predictions.")  # fmt: skip
    with c2:
        picture = ui.pick_picture(index)
    if picture is None:
        return
    detector = None
    if source != SYNTHETIC:
        detector = ui.detector_of(checkpoints[source], source)
        if detector is None:
            return
        problems = compatibility_problems(detector.info, class_names=picture.classes)
        if problems:
            st.warning(f"{source} cannot score this dataset: {'; '.join(problems)}. Choose a dataset with its "
                       f"classes, or use {SYNTHETIC}.")  # fmt: skip
            return
    outputs, anchors = _outputs(detector, picture)
    if outputs is None:
        return
    coding = detector.coding if detector else "tanh"
    losses = compare_losses(*outputs, picture.normalized, picture.labels, anchors, alpha, gamma, coding)
    bce, focal, parts = losses.bce, losses.focal, losses.parts
    m = st.columns(4)
    m[0].metric("Anchors", f"{len(anchors):,}")
    m[1].metric("Positive anchors", int(bce.num_positives))
    m[2].metric("BCE loss", f"{float(bce.loss):.4g}")
    m[3].metric("Focal loss", f"{float(focal.loss):.4g}")
    ui.show_figure(loss_shares_figure(losses), "loss-shares")
    st.caption(_shares_text(source, detector, len(anchors), parts))

    c1, c2 = st.columns([2, 1])
    view = c1.radio("Show", VIEWS, key=keys.LOSS_VIEW, bind="query-params", horizontal=True)
    level = ui.level_picker(anchors, c2)
    left, right = st.columns(2)
    for column, name, details in ((left, "BCE", bce), (right, "focal", focal)):
        fig = loss_map(picture.image, anchors, details, name, view, level, encode=image_uri)
        ui.show_figure(fig, f"loss-map-{name}", column)
    st.markdown("**How sure the predictions are** (the same for both losses)")
    ui.show_figure(p_t_histogram(bce.p_t[0], bce.positive[0]), "p-t-histogram")


def _shares_text(source: str, detector, num_anchors: int, parts: dict) -> str:
    """What the loss-share bars say, in words and in this image's numbers."""
    b = parts["BCE"]
    easy = {name: p.easy_negative_cls / p.total if p.total > 0 else 0.0 for name, p in parts.items()}
    trained = detector.info.training.get("loss") if detector is not None else None
    who = f"{source} (trained with {trained})" if trained else source
    text = (f"{who}: of its {num_anchors:,} anchors on this image, {b.positives:,} are positive (matching IoU "
            f"{DEFAULT_IOU_THRESHOLD:g}, as in training), {b.easy_negatives:,} are easy negatives (background, "
            f"p_t above {EASY_P_T:g}) and {b.hard_negatives:,} hard negatives. The easy negatives make "
            f"{easy['BCE']:.1%} of the BCE loss and {easy['focal']:.1%} of the focal loss.")  # fmt: skip
    if trained == "bce":
        text += (" Trained with BCE, a model pushes its negatives' p_t towards 1, so they weigh little even "
                 "under BCE: a focal-trained model leaves them less sure, and BCE would weigh them more.")  # fmt: skip
    return text


def _outputs(detector, picture: ui.Picture):
    """(class_logits, box_activations) for the image and the anchors they belong to."""
    if detector is not None:
        return detector.raw_outputs([picture.image]), detector.anchors.to("cpu")
    st.caption("Synthetic logits: each element's p_t is drawn around the value you set (seeded), and every box "
               "prediction equals its anchor. Nothing here comes from a model.")  # fmt: skip
    c1, c2, c3 = st.columns(3)
    config, _ = ui.anchor_picker()
    anchors = ui.anchors_of(config)
    p_pos = c1.slider("p_t of objects' own class", 0.05, 0.95, 0.6, 0.05, key=keys.SYNTHETIC_POSITIVE)
    p_neg = c2.slider("p_t of everything else", 0.5, 0.999, 0.97, 0.001, key=keys.SYNTHETIC_NEGATIVE, format="%.3f")
    spread = c3.slider("Spread (logit std)", 0.0, 3.0, 1.0, 0.25, key=keys.SYNTHETIC_SPREAD)
    match = match_anchors(picture.normalized, anchors.boxes, DEFAULT_IOU_THRESHOLD)
    background = len(picture.classes)
    target = torch.full((len(anchors),), background)
    if picture.labels.numel():
        target = torch.where(match.positive, picture.labels[match.best_gt.clamp(min=0)], background)
    return synthetic_outputs(target[None], background, p_pos, p_neg, spread), anchors


main()

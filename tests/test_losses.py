"""Losses: focal = torchvision's sigmoid_focal_loss, batched = a per-image loop, empty images, no NaN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import sigmoid_focal_loss

from benchmarks.reference_loss import ssd_loss_loop
from detviz import losses
from detviz.anchors import PRESETS, make_anchors
from detviz.losses import (
    EASY_P_T,
    LESSON_CLASS_WEIGHT,
    classification_elements,
    largest_object_loss,
    loss_breakdown,
    loss_curve,
    multilabel_loss,
    ssd_loss,
    ssd_loss_details,
    synthetic_outputs,
)
from detviz.matching import match_anchors

LESSON = make_anchors(PRESETS["lesson_4x4"])
MULTI = make_anchors(PRESETS["lesson_multiscale"])
C = 20


def _batch(seed: int, b: int = 4, g: int = 5, anchors=MULTI, empty_images: tuple[int, ...] = ()):
    gen = torch.Generator().manual_seed(seed)
    a = len(anchors)
    xy = torch.rand(b, g, 2, generator=gen) * 0.7
    gt_boxes = torch.cat([xy, xy + 0.05 + torch.rand(b, g, 2, generator=gen) * 0.3], -1)
    gt_labels = torch.randint(0, C, (b, g), generator=gen)
    gt_valid = torch.rand(b, g, generator=gen) > 0.25
    for i in empty_images:
        gt_valid[i] = False
    class_logits = torch.randn(b, a, C + 1, generator=gen) * 2 - 2
    box_activations = torch.randn(b, a, 4, generator=gen)
    return class_logits, box_activations, gt_boxes, gt_labels, gt_valid


def test_focal_elements_equal_torchvision_sigmoid_focal_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, C + 1, generator=gen) * 3
    target_class = torch.randint(0, C + 1, (3, 50), generator=gen)  # C is background
    for alpha, gamma in ((0.25, 2.0), (0.5, 1.0), (0.75, 0.0)):
        ours, _ = classification_elements(logits, target_class, "focal", alpha, gamma)
        target = F.one_hot(target_class, C + 1)[..., :C].float()
        theirs = sigmoid_focal_loss(logits[..., :C], target, alpha=alpha, gamma=gamma, reduction="none")
        torch.testing.assert_close(ours, theirs)
        # and the gradients agree (the modulating factor is not detached in either)
        x1 = logits.clone().requires_grad_(True)
        x2 = logits.clone().requires_grad_(True)
        classification_elements(x1, target_class, "focal", alpha, gamma)[0].sum().backward()
        sigmoid_focal_loss(x2[..., :C], target, alpha=alpha, gamma=gamma, reduction="sum").backward()
        torch.testing.assert_close(x1.grad, x2.grad)


def test_bce_elements_and_p_t() -> None:
    logits = torch.tensor([[[2.0, -1.0, 0.3]]])  # one anchor, C = 2, background column last
    loss, p_t = classification_elements(logits, torch.tensor([[0]]), "bce")
    p = torch.sigmoid(torch.tensor([2.0, -1.0]))
    torch.testing.assert_close(p_t[0, 0], torch.stack([p[0], 1 - p[1]]))
    torch.testing.assert_close(loss[0, 0], -torch.log(p_t[0, 0]))
    _, p_t_bg = classification_elements(logits, torch.tensor([[2]]), "bce")  # background: all zeros
    torch.testing.assert_close(p_t_bg[0, 0], 1 - p)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["bce", "focal"]), st.sampled_from([0.3, 0.4, 0.5]))
def test_batched_loss_equals_a_per_image_loop(seed: int, classification: str, threshold: float) -> None:
    batch = _batch(seed, empty_images=(1,))
    ours = ssd_loss(*batch, MULTI, classification=classification, iou_threshold=threshold)
    loop = ssd_loss_loop(*batch, MULTI, classification=classification, iou_threshold=threshold)
    for part in ("loss", "loss_box", "loss_cls"):
        torch.testing.assert_close(ours[part], loop[part], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("classification", ["bce", "focal"])
@pytest.mark.parametrize("normalization", ["lesson", "num_positives"])
def test_details_give_the_same_loss_and_per_anchor_parts_sum_to_it(classification: str, normalization: str) -> None:
    batch = _batch(7)
    fast = ssd_loss(*batch, MULTI, classification=classification, normalization=normalization)
    d = ssd_loss_details(*batch, MULTI, classification=classification, normalization=normalization)
    for part in ("loss", "loss_box", "loss_cls", "num_positives"):
        torch.testing.assert_close(fast[part], getattr(d, part), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d.anchor_loss_box.sum(), d.loss_box)
    torch.testing.assert_close(d.anchor_loss_cls.sum(), d.loss_cls)
    assert bool((d.anchor_loss_box[~d.positive] == 0).all())
    assert d.p_t.shape == d.positive.shape and bool(((d.p_t >= 0) & (d.p_t <= 1)).all())
    torch.testing.assert_close(d.p_t, d.element_p_t.min(-1).values)


def test_lesson_normalization_definition() -> None:
    batch = _batch(3, b=3)
    d = ssd_loss_details(*batch, MULTI)
    for i in range(3):  # each image: mean L1 over its positives' coordinates
        pos = d.positive[i]
        expected = (d.pred_boxes[i][pos] - d.target_boxes[i][pos]).abs().mean()
        torch.testing.assert_close(d.anchor_loss_box[i].sum(), expected)
    torch.testing.assert_close(d.loss_cls, d.element_loss.sum() / C)


def test_num_positives_normalization_definition() -> None:
    batch = _batch(5)
    d = ssd_loss_details(*batch, MULTI, classification="focal", normalization="num_positives")
    n = d.positive.sum()
    torch.testing.assert_close(d.loss_cls, d.element_loss.sum() / n)
    l1 = ((d.pred_boxes - d.target_boxes).abs().sum(-1) * d.positive).sum()
    torch.testing.assert_close(d.loss_box, l1 / n)


def test_images_without_objects_add_no_box_loss_and_no_nan() -> None:
    logits, acts, boxes, labels, valid = _batch(1, b=3, empty_images=(0, 1, 2))
    for classification in ("bce", "focal"):
        for normalization in ("lesson", "num_positives"):
            logits_g = logits.clone().requires_grad_(True)
            acts_g = acts.clone().requires_grad_(True)
            out = ssd_loss(
                logits_g,
                acts_g,
                boxes,
                labels,
                valid,
                MULTI,
                classification=classification,
                normalization=normalization,
            )
            assert out["num_positives"].item() == 0 and out["loss_box"].item() == 0.0
            assert torch.isfinite(out["loss"])
            out["loss"].backward()
            assert bool(torch.isfinite(logits_g.grad).all()) and bool((acts_g.grad == 0).all())
    # all background: the class loss is that of all-zero targets
    out = ssd_loss(logits, acts, boxes, labels, valid, MULTI)
    torch.testing.assert_close(out["loss_cls"], F.softplus(logits[..., :C]).sum() / C)
    # zero ground-truth slots at all (G = 0)
    g0 = ssd_loss(
        logits,
        acts,
        torch.zeros(3, 0, 4),
        torch.zeros(3, 0, dtype=torch.int64),
        torch.zeros(3, 0, dtype=torch.bool),
        MULTI,
    )
    torch.testing.assert_close(g0["loss"], out["loss"])


def test_focal_loss_weights_easy_negatives_down() -> None:
    """The lesson's point: with BCE most of the class loss comes from the many easy negatives."""
    logits, acts, boxes, labels, valid = _batch(9, b=2)
    logits[..., :C] = -4.0  # confident "nothing here" everywhere: easy negatives
    bce = ssd_loss_details(logits, acts, boxes, labels, valid, MULTI, classification="bce")
    focal = ssd_loss_details(logits, acts, boxes, labels, valid, MULTI, classification="focal")
    neg_share = lambda d: float(d.anchor_loss_cls[~d.positive].sum() / d.anchor_loss_cls.sum())  # noqa: E731
    assert neg_share(bce) > 0.5 > neg_share(focal)


def test_largest_object_and_multilabel_losses() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
    acts = torch.zeros(2, 4)  # sigmoid(0) = 0.5 everywhere
    target_class = torch.tensor([0, -1])  # the second image has no object: left out
    target_boxes = torch.tensor([[0.5, 0.5, 0.9, 0.7], [0.0, 0.0, 0.0, 0.0]])
    out = largest_object_loss(logits, acts, target_class, target_boxes)
    torch.testing.assert_close(out["loss_box"], torch.tensor((0 + 0 + 0.4 + 0.2) / 4))
    torch.testing.assert_close(out["loss_cls"], F.cross_entropy(logits[:1], target_class[:1]))
    torch.testing.assert_close(out["loss"], out["loss_box"] + LESSON_CLASS_WEIGHT * out["loss_cls"])
    none = largest_object_loss(logits, acts, torch.tensor([-1, -1]), target_boxes)
    assert none["loss"].item() == 0.0
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    torch.testing.assert_close(
        multilabel_loss(logits[:1], targets), F.binary_cross_entropy_with_logits(logits[:1], targets)
    )


# --- bad input ---------------------------------------------------------------------------


def _bad(**changes):
    logits, acts, boxes, labels, valid = _batch(0, b=2, g=3, anchors=LESSON)
    args = {
        "class_logits": logits,
        "box_activations": acts,
        "gt_boxes": boxes,
        "gt_labels": labels,
        "gt_valid": valid,
        "anchors": LESSON,
    } | changes
    return lambda **kw: ssd_loss(**args, **kw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"class_logits": torch.zeros(2, 189, 21)},
            r"class_logits must have shape \(B, 16, C\+1\), got \(2, 189, 21\)",
        ),
        ({"class_logits": torch.zeros(2, 16, 1)}, r"C \+ 1 >= 2 columns"),
        ({"box_activations": torch.zeros(2, 16, 5)}, r"box_activations must have shape \(2, 16, 4\), got \(2, 16, 5\)"),
        ({"gt_boxes": torch.zeros(2, 3, 5)}, r"gt_boxes must have shape \(2, G, 4\), got \(2, 3, 5\)"),
        ({"gt_labels": torch.zeros(2, 3)}, r"gt_labels must be an integer tensor, got torch.float32"),
        ({"gt_labels": torch.tensor([[0, 20, 1], [0, 0, 0]])}, r"gt_labels has label 20; labels must be in 0..19"),
        ({"gt_labels": torch.tensor([[0, -3, 1], [0, 0, 0]])}, r"gt_labels has label -3"),
        ({"gt_valid": torch.ones(2, 3, dtype=torch.uint8)}, r"gt_valid must be a bool tensor, got torch.uint8"),
        (
            {"gt_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.9]] * 3] * 2)},
            r"gt_boxes at index \[0, 0\] is \[0.5, 0.5, 0.2, 0.9\]",
        ),
        ({"gt_boxes": torch.full((2, 3, 4), float("nan"))}, r"gt_boxes has a NaN or infinite coordinate"),
        ({"box_activations": torch.zeros(2, 16, 4, device="meta")}, r"different devices .*box_activations on meta"),
    ],
)
def test_bad_inputs_name_the_argument(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _bad(**changes)()


def test_padding_labels_are_not_checked_and_options_are() -> None:
    logits, acts, boxes, labels, valid = _batch(0, b=2, g=3, anchors=LESSON)
    labels[~valid] = -1  # IGNORE in padding slots is fine
    ssd_loss(logits, acts, boxes, labels, valid, LESSON)
    with pytest.raises(ValueError, match=r"classification must be one of bce, focal, got 'softmax'"):
        ssd_loss(logits, acts, boxes, labels.clamp(min=0), valid, LESSON, classification="softmax")
    with pytest.raises(ValueError, match=r"normalization must be one of lesson, num_positives, got 'mean'"):
        ssd_loss(logits, acts, boxes, labels.clamp(min=0), valid, LESSON, normalization="mean")


@pytest.mark.parametrize("classification", ["bce", "focal"])
def test_training_path_has_the_same_gradients_as_the_detailed_one(classification: str) -> None:
    logits, acts, boxes, labels, valid = _batch(11)
    grads = []
    for fn in (ssd_loss, ssd_loss_details):
        lg, ag = logits.clone().requires_grad_(True), acts.clone().requires_grad_(True)
        out = fn(lg, ag, boxes, labels, valid, MULTI, classification=classification)
        (out["loss"] if isinstance(out, dict) else out.loss).backward()
        grads.append((lg.grad, ag.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("classification", "gamma"), [("bce", 2.0), ("focal", 2.0), ("focal", 1.5)])
def test_class_loss_sum_over_uneven_blocks_is_the_elements_sum(monkeypatch, classification: str, gamma: float) -> None:
    """Many blocks, the last one short: the sum, background column left out, and its gradient
    equal those of the per-element loss."""
    monkeypatch.setattr(losses, "LOSS_BLOCK_ELEMENTS", 8 * (C + 1))  # 8 rows a block, 567 rows
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 189, C + 1, generator=gen) * 3
    logits[0, :4] = 30.0  # softplus's linear range
    target = torch.randint(0, C + 1, (3, 189), generator=gen).where(torch.rand(3, 189, generator=gen) < 0.2, C)
    image, anchor = torch.nonzero(target < C, as_tuple=True)
    grads = []
    for fast in (True, False):
        x = logits.clone().requires_grad_(True)
        if fast:
            total = losses.class_loss_sum(x, image, anchor, target[image, anchor], classification, 0.3, gamma)
        else:
            total = classification_elements(x, target, classification, 0.3, gamma)[0].sum()
        total.backward()
        grads.append((total.detach(), x.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9])
def test_loss_curve_is_torchvisions_focal_loss_and_bce(alpha: float, gamma: float) -> None:
    p = torch.linspace(0.01, 0.99, 50)
    logit = torch.logit(p)
    ones, zeros = torch.ones_like(p), torch.zeros_like(p)
    # an object element with p_t = p has logit(p); a background element with p_t = p has -logit(p)
    expected_pos = sigmoid_focal_loss(logit, ones, alpha=alpha, gamma=gamma, reduction="none")
    expected_neg = sigmoid_focal_loss(-logit, zeros, alpha=alpha, gamma=gamma, reduction="none")
    torch.testing.assert_close(loss_curve(p, "focal", alpha, gamma, positive=True), expected_pos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_curve(p, "focal", alpha, gamma, positive=False), expected_neg, rtol=1e-5, atol=1e-6)
    no_alpha = sigmoid_focal_loss(logit, ones, alpha=-1, gamma=gamma, reduction="none")  # torchvision: alpha < 0 = none
    torch.testing.assert_close(loss_curve(p, "focal", None, gamma), no_alpha, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_curve(p, "bce"), -torch.log(p), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_curve(p, "bce", positive=False), -torch.log(p), rtol=1e-5, atol=1e-6)


def test_loss_breakdown_parts_sum_to_the_images_loss() -> None:
    logits, boxes, gt, labels, valid = _batch(3, b=2)
    for classification in ("bce", "focal"):
        details = ssd_loss_details(logits, boxes, gt, labels, valid, MULTI, classification)
        parts = [loss_breakdown(details, i) for i in range(2)]
        for i, part in enumerate(parts):
            image_loss = details.anchor_loss_box[i].sum() + details.anchor_loss_cls[i].sum()
            assert part.total == pytest.approx(float(image_loss), rel=1e-5)
            assert part.positives + part.hard_negatives + part.easy_negatives == len(MULTI)
            assert part.positives == int(details.positive[i].sum())
            easy = ~details.positive[i] & (details.p_t[i] > EASY_P_T)
            assert part.easy_negatives == int(easy.sum())
            assert part.easy_negative_cls == pytest.approx(float(details.anchor_loss_cls[i][easy].sum()), rel=1e-5)
        assert sum(p.total for p in parts) == pytest.approx(float(details.loss), rel=1e-5)


def test_synthetic_outputs_have_the_chosen_confidence() -> None:
    gt = torch.tensor([[0.1, 0.1, 0.6, 0.7]])
    match = match_anchors(gt, MULTI.boxes, 0.4)
    target = torch.where(match.positive, 2, C)[None]
    logits, boxes = synthetic_outputs(target, C, p_positive=0.7, p_negative=0.95, spread=0.0)
    assert logits.shape == (1, len(MULTI), C + 1) and torch.equal(boxes, torch.zeros(1, len(MULTI), 4))
    _, p_t = classification_elements(logits, target)
    torch.testing.assert_close(p_t[0][match.positive][:, 2], torch.full((int(match.positive.sum()),), 0.7))
    others = torch.ones_like(p_t[0], dtype=torch.bool)
    others[match.positive, 2] = False
    torch.testing.assert_close(p_t[0][others], torch.full((int(others.sum()),), 0.95))
    again, _ = synthetic_outputs(target, C, 0.7, 0.95, spread=1.0, seed=4)
    assert torch.equal(again, synthetic_outputs(target, C, 0.7, 0.95, spread=1.0, seed=4)[0])  # seeded
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(ValueError, match=r"p_negative must be in \(0, 1\)"):
            synthetic_outputs(target, C, 0.7, bad)

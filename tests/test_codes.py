"""The registries of codes: distinct enums, error types in one order, and the old names kept."""

from __future__ import annotations

import torch

import detviz.evaluate as evaluate
import detviz.postprocess as postprocess
from detviz.codes import DETECTION_OUTCOMES, ERROR_TYPES, ErrorKind, ErrorType, NMSDecision, Outcome


def test_nms_decisions_and_outcomes_never_compare_equal() -> None:
    assert not {int(d) for d in NMSDecision} & {int(o) for o in Outcome}
    outcome = torch.tensor([Outcome.TP, Outcome.FP, Outcome.DUPLICATE, Outcome.IGNORED, Outcome.NOT_DETECTION])
    for decision in NMSDecision:  # an outcome array read as NMS decisions matches nothing
        assert not bool((outcome == decision).any())


def test_every_code_has_its_words() -> None:
    assert [d.label for d in NMSDecision] == ["kept", "suppressed", "over the limit"]
    assert [o.label for o in DETECTION_OUTCOMES] == ["TP", "FP", "duplicate", "ignored (difficult)"]
    assert Outcome.NOT_DETECTION not in DETECTION_OUTCOMES and Outcome.NOT_DETECTION.label == ""
    assert all(o.colour.startswith("#") for o in DETECTION_OUTCOMES)


def test_error_types_are_in_code_order() -> None:
    assert [int(k) for k in ErrorKind] == list(range(len(ERROR_TYPES)))
    assert all(
        isinstance(t, ErrorType) and ERROR_TYPES[k] is k.type for k, t in zip(ErrorKind, ERROR_TYPES, strict=True)
    )
    assert [t.name for t in ERROR_TYPES] == [
        "classification",
        "localisation",
        "both",
        "duplicate",
        "background",
        "missed",
    ]
    assert len({t.colour for t in ERROR_TYPES}) == len(ERROR_TYPES)
    assert all(t.description.endswith(".") for t in ERROR_TYPES)


def test_old_names_are_the_codes() -> None:
    assert tuple(NMSDecision) == (postprocess.KEPT, postprocess.SUPPRESSED, postprocess.OVER_LIMIT)
    assert (evaluate.TP, evaluate.FP, evaluate.DUPLICATE, evaluate.IGNORED) == DETECTION_OUTCOMES
    assert tuple(ErrorKind) == (evaluate.CLS, evaluate.LOC, evaluate.BOTH, evaluate.DUPE, evaluate.BKG, evaluate.MISS)


def test_the_breakdown_reports_every_error_type_in_order() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10]])
    eb = evaluate.error_breakdown([(boxes, [0.9], [0])], [(boxes + 50, [0])], 1)
    assert list(eb.delta_map) == [t.name for t in ERROR_TYPES]
    assert eb.counts.shape == (1, len(ERROR_TYPES)) and eb.counts[0, ErrorKind.BKG] == 1

"""The sets of codes detviz hands around, one place each: what NMS decided about a candidate,
how the evaluation scored a detection, and the kinds of error in the error breakdown.

Each member carries its words (and colour, where figures draw it), so whatever counts, colours
or describes the codes loops over the enum instead of keeping a parallel list. The enums are
distinct types with distinct values: an outcome array passed where NMS decisions are expected
matches no decision, instead of silently reading TP as "kept".
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple, TypeVar

_Code = TypeVar("_Code", bound=IntEnum)


def _member(cls: type[_Code], value: int, **attributes: Any) -> _Code:
    """An IntEnum member with this value carrying these attributes (for the enums' __new__)."""
    member = int.__new__(cls, value)
    member._value_ = value
    member.__dict__.update(attributes)
    return member


class NMSDecision(IntEnum):
    """What NMS did with a candidate (`NMSTrace.status`)."""

    label: str

    def __new__(cls, value: int, label: str) -> NMSDecision:
        return _member(cls, value, label=label)

    KEPT = 0, "kept"
    SUPPRESSED = 1, "suppressed"  # a better box of its class overlaps it by more than the NMS IoU
    OVER_LIMIT = 2, "over the limit"  # kept by NMS, but beyond max_detections


class Outcome(IntEnum):
    """How a VOC evaluation scored a detection (`VOCResult.status`); NOT_DETECTION marks a
    candidate that is no detection (suppressed, or beyond the limit) in an array of outcomes."""

    label: str
    colour: str

    def __new__(cls, value: int, label: str, colour: str) -> Outcome:
        return _member(cls, value, label=label, colour=colour)

    NOT_DETECTION = -1, "", ""
    # values apart from NMSDecision's, so the two never compare equal
    TP = 10, "TP", "#38a169"
    FP = 11, "FP", "#e53e3e"
    DUPLICATE = 12, "duplicate", "#dd6b20"  # its object was taken by a better detection
    IGNORED = 13, "ignored (difficult)", "#a0aec0"  # on a difficult object, neither TP nor FP


DETECTION_OUTCOMES = tuple(o for o in Outcome if o is not Outcome.NOT_DETECTION)  # the outcomes a detection can have


BACKGROUND_IOU = 0.1  # TIDE's background threshold: below it a box overlaps no object at all


class ErrorType(NamedTuple):
    """One kind of error of the TIDE-style breakdown: its name (the key of `delta_map`, a column
    of the counts table), the colour figures draw it in, and one sentence saying what it is."""

    name: str
    colour: str
    description: str


class ErrorKind(IntEnum):
    """The error types as codes (`ErrorBreakdown.error`): each value is the type's position in
    ERROR_TYPES and its column in `ErrorBreakdown.counts`."""

    type: ErrorType

    def __new__(cls, value: int, error_type: ErrorType) -> ErrorKind:
        return _member(cls, value, type=error_type)

    CLS = 0, ErrorType("classification", "#805ad5", "Classification: on an object of another class.")
    LOC = (
        1,
        ErrorType(
            "localisation",
            "#dd6b20",
            f"Localisation: right class, box off (IoU between {BACKGROUND_IOU:g} and the threshold).",
        ),
    )
    BOTH = 2, ErrorType("both", "#b83280", "Both: wrong class and off.")
    DUPE = 3, ErrorType("duplicate", "#d69e2e", "Duplicate: its object was already found.")
    BKG = 4, ErrorType("background", "#e53e3e", "Background: on no object.")
    MISS = 5, ErrorType("missed", "#d53f8c", "Missed: objects nobody found.")


ERROR_TYPES: tuple[ErrorType, ...] = tuple(kind.type for kind in ErrorKind)
NO_ERROR = -1  # the error code of a true positive or a detection on a difficult object

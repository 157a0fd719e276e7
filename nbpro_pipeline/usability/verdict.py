"""The usability verdicts a stored image can get, as the ledger's ``usability`` column spells them."""

from __future__ import annotations

from enum import StrEnum


class Usability(StrEnum):
    USABLE = "usable"
    BLANK = "blank"  # (nearly) every sampled pixel has one colour
    DUPLICATE = "duplicate"  # a near-duplicate of an earlier paid image of the same cell
    REFERENCE_COPY = "reference_copy"  # a near-duplicate of one of its own reference images


UNUSABLE = frozenset({Usability.BLANK.value, Usability.DUPLICATE.value, Usability.REFERENCE_COPY.value})

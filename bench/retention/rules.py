"""The pre-registered rules of the retention benchmark: which families enter a pooled number, and
how a comparison between two methods is read. Fixed (and documented in bench/README.md) before
any number of the v2 protocol was computed; changing a constant here changes the protocol.

Ceiling. A family whose truth signal no reference method loses carries no information about
differences between methods and only dilutes the pooled number (the ``numbers`` family kept
R of about 0.98-1.00 under every method, magnitude pruning included). Rule: on a measure, a
family is *at the ceiling* when every reference method present at that setting (wanda, tplo by
default) has R >= 0.95 on it. Only references decide, so scoring an extra method never changes
which families are pooled.

Floor. R divides by D - 0.5, the dense model's margin over chance. When that margin is small
and uncertain, R is a ratio of noise (a family at dense accuracy 0.571 gave R = -0.04
[-5.0, 0.81]). Rule: on a measure, a family is *at the floor* when the dense value is below 0.60,
or when the lower end of its 95 % interval leaves less than half of the point's margin over
chance (the denominator is uncertain by more than a factor of two).

Both kinds are reported per family, marked, and left out of the pooled R and pooled drop. The
plain drop (dense - pruned, in accuracy points) is reported for every family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .stats import CHANCE

CEILING_R = 0.95
FLOOR_DENSE = 0.60
FLOOR_MARGIN_SHARE = 0.5
LEVEL = 0.95


def family_status(family: Mapping, references: Sequence[str]) -> str:
    """'floor', 'ceiling' or 'ok' for one family entry of ``stats.analyse`` (one measure)."""
    d = family["dense"]
    margin = d["point"] - CHANCE
    if d["point"] < FLOOR_DENSE or d["ci"][0] - CHANCE < FLOOR_MARGIN_SHARE * margin:
        return "floor"
    refs = [family["methods"][r]["R"]["point"] for r in references if r in family["methods"]]
    if refs and all(r >= CEILING_R for r in refs):
        return "ceiling"
    return "ok"


def pool_by_rules(references: Sequence[str]):
    """A ``pool`` callable for ``stats.analyse``: marks each family's status, returns the 'ok' ones."""

    def pool(_measure: str, families: dict) -> list[str]:
        chosen = []
        for name, fam in families.items():
            fam["status"] = family_status(fam, references)
            if fam["status"] == "ok":
                chosen.append(name)
        return chosen

    return pool


def verdict(diff: Mapping, margin: float = 0.0) -> str:
    """The reading of a paired difference (method - reference) with its 95 % interval: 'better'
    when the lower end is above ``margin`` (0: above zero), 'worse' when the upper end is below
    zero, otherwise 'no difference shown' (then the MDE says what size could have been seen)."""
    lo, hi = diff["ci"]
    if lo > margin:
        return "better"
    if hi < 0:
        return "worse"
    return "no difference shown"


__all__ = ["CEILING_R", "FLOOR_DENSE", "FLOOR_MARGIN_SHARE", "LEVEL", "family_status", "pool_by_rules", "verdict"]

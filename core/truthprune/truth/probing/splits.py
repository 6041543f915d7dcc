"""Entity-grouped train/test splits and balanced subsampling (pure numpy).

Why grouped: TiU sets hold each fact twice ("X is in Y" true, "X is in Z" false) and a negated
twin of each. A random row split puts one member of such a group in train and the other in
test; a probe then learns "this subject is true" and inverts it on the twin, giving accuracies
far *below* chance in early layers. Keeping every statement about one entity, and its negated
twin, on the same side makes held-out accuracy measure truth, not memorised subjects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import UserError


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def group_rows(key_lists: Sequence[Sequence[str]]) -> np.ndarray:
    """Group ids for n row-aligned rows: rows sharing a key in ANY of the key lists are joined.

    ``key_lists`` holds one per-row key list per member of a topic (affirmative, negated); row i
    of every member is the same fact, so grouping is done on row indices. Ids are 0..k-1 in order
    of first appearance.
    """
    n = len(key_lists[0])
    if any(len(keys) != n for keys in key_lists):
        raise UserError("row-aligned statement sets must have the same number of rows")
    parent = list(range(n))
    for keys in key_lists:
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            j = first.setdefault(k, i)
            if j != i:
                ri, rj = _find(parent, i), _find(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    roots = [_find(parent, i) for i in range(n)]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(r, len(ids)) for r in roots], dtype=np.int64)


def grouped_split(groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, test_rows): whole groups, shuffled by ``seed``, go to test until it holds
    at least ``test_fraction`` of the rows. Both sides are non-empty."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test fraction {test_fraction} must lie strictly between 0 and 1")
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if len(unique) < 2:
        raise UserError("cannot split: all statements share one entity group; use a set with several subjects")
    order = np.random.default_rng(seed).permutation(unique)
    sizes = {g: c for g, c in zip(*np.unique(groups, return_counts=True))}
    target = test_fraction * len(groups)
    test_groups, count = [], 0
    for g in order[:-1]:  # keep at least one group for training
        if count >= target:
            break
        test_groups.append(g)
        count += sizes[g]
    is_test = np.isin(groups, test_groups)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def balanced_subsample(n_rows: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` distinct row indices drawn without replacement (the reference's per-topic draw)."""
    if size > n_rows:
        raise UserError(f"cannot draw {size} rows from a set of {n_rows}")
    return np.sort(rng.choice(n_rows, size=size, replace=False))


def balanced_rows(labels: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``cap`` row indices, half of each class where possible (the rest from the larger
    class), sampled without replacement and sorted; all rows when the set is not larger than ``cap``.

    Why balanced: a capped sample that happened to hold 70 % true statements would let a probe
    that always says "true" score 0.7; with equal classes chance stays at 0.5 for every set."""
    labels = np.asarray(labels)
    n = len(labels)
    if cap is None or n <= cap:
        return np.arange(n)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    k_pos = min(len(pos), max(cap // 2, cap - len(neg)))
    k_neg = cap - k_pos
    rows = np.concatenate([rng.choice(pos, k_pos, replace=False), rng.choice(neg, k_neg, replace=False)])
    return np.sort(rows)


__all__ = ["group_rows", "grouped_split", "balanced_subsample", "balanced_rows"]

"""Load a Hugging Face hub data set, turning "no network" into one actionable line.

Every hub-backed source (C4, WikiText-2, TruthfulQA) goes through :func:`load_hub_dataset` so
that a machine without internet gets the same message shape everywhere: what could not be
reached, and which flag points truthprune at a local copy instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import UserError

log = logging.getLogger(__name__)


@contextmanager
def _offline_unless_reachable() -> Iterator[None]:
    """Without a network, switch datasets/huggingface_hub to offline mode for this call: a cached
    data set still loads, an uncached one fails at once, instead of retrying with a warning per
    request for half a minute. One connection attempt (3 s at most) decides."""
    from ..models.formats import _hub_offline, _hub_reachable

    if _hub_offline() or _hub_reachable():
        yield
        return
    import datasets.config as dconf
    import huggingface_hub.constants as hconst

    saved = [(m, a, getattr(m, a)) for m, a in ((dconf, "HF_HUB_OFFLINE"), (dconf, "HF_DATASETS_OFFLINE"),
                                                (hconst, "HF_HUB_OFFLINE")) if hasattr(m, a)]
    for m, a, _ in saved:
        setattr(m, a, True)
    try:
        yield
    finally:
        for m, a, v in saved:
            setattr(m, a, v)


def hub_reachable() -> bool:
    """Whether hub data can be downloaded now: False when the hub is switched off
    (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) or one connection attempt (3 s at most) fails.
    Sources check it at plan time and, when False, read their (cached) data at once, so "no
    network and no cached copy" fails before the model loads."""
    from ..models.formats import _hub_offline, _hub_reachable

    return not _hub_offline() and _hub_reachable()


def load_hub_dataset(
    name: str,
    config: str | None = None,
    *,
    split: str,
    fix: str,
    data_files: dict[str, str] | None = None,
) -> Any:
    """``datasets.load_dataset(name, config, split=..., data_files=...)`` or a one-line UserError.

    ``fix`` is the sentence telling the user how to use a local file instead
    (e.g. "pass --calibration-opt path=FILE").
    """
    import datasets

    label = name if config is None else f"{name}/{config}"
    try:
        with _offline_unless_reachable():
            return datasets.load_dataset(name, config, split=split, data_files=data_files)
    except ConnectionError as err:
        # datasets raises ConnectionError both when offline mode is on (HF_HUB_OFFLINE=1) and
        # when the hub cannot be resolved; neither is fixable by retrying here.
        log.debug("hub load of %s failed: %r", label, err)
        raise UserError(f"the Hugging Face hub is unreachable, so {label!r} cannot be downloaded; {fix}") from None
    except Exception as err:  # a missing/renamed data set, a broken cache, an auth wall, ...
        first = (str(err).splitlines() or [""])[0][:160]
        raise UserError(f"could not load {label!r} from the Hugging Face hub ({type(err).__name__}: {first}); {fix}") from None

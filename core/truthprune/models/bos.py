"""Where a sequence starts with a BOS token: the ``--bos auto|always|never`` rule.

Why this exists: some models (Gemma above all) are trained with a BOS token at position 0 of
every sequence and fall apart without it -- the first position acts as an attention sink, and a
content token there gets huge activations instead. Measured on Gemma 3 270M: four 511-token
WikiText windows score perplexity 134 without a BOS and 55 with one. Cutting a long token stream
into windows (perplexity, calibration) drops that BOS from every window but the first, so every
place that *makes a window* asks this module whether to start it with BOS.

The settings:

* ``never``: truthprune inserts no BOS. Windows are cut from the tokenizer's own output, so a BOS
  appears only where the tokenizer puts one (at the start of each separately tokenised text):
  exactly the reference protocol (REFERENCE.md 3 and 11.1) and truthprune's behaviour before the
  setting existed. Statements are encoded as the tokenizer does.
* ``always``: every window is ``[BOS] + seqlen-1 text tokens`` and every statement/prompt starts
  with BOS. Fails when the tokenizer has no BOS token.
* ``auto`` (default): windows start with BOS exactly when the *model expects one*: its tokenizer
  adds a BOS to a plain ``tokenizer(text)`` (``add_bos_token``), or its chat template starts
  with the BOS token. Statements (each a whole input on its own) get a BOS whenever the
  tokenizer has one, as the reference feeds them (REFERENCE.md 10.1).

For SmolLM2 (GPT-2 style tokenizer: no BOS added; its BOS token is ``<|im_start|>``, which the
ChatML template uses as a turn marker, never as ``bos_token``) ``auto`` inserts
nothing into windows, so its windows and numbers are bit-identical to ``never``; Gemma's
tokenizer adds ``<bos>``, so every Gemma window starts with it. Llama-2/3 and Mistral tokenizers
also add a BOS, so under ``auto`` their windows start with BOS too; ``--bos never`` reproduces
the reference's WikiText numbers for them (one BOS at the very start of the text only).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UserError

log = logging.getLogger(__name__)

BOS_SETTINGS = ("auto", "always", "never")


@dataclass(frozen=True)
class BosRule:
    """The resolved rule for one tokenizer: what gets a BOS, and why (recorded in reports)."""

    setting: str
    bos_id: int | None
    windows: bool  # perplexity and calibration windows start with BOS
    statements: bool  # probe statements and scored prompts start with BOS
    reason: str

    @property
    def window_bos(self) -> int | None:
        """The token id to start every window with, or None (windows cut as tokenised)."""
        return self.bos_id if self.windows else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_setting(setting: str) -> str:
    if setting not in BOS_SETTINGS:
        raise UserError(f"--bos {setting!r} is not one of {', '.join(BOS_SETTINGS)}; the default auto follows the tokenizer")
    return setting


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether plain ``tokenizer(text)`` already starts with the BOS token."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def template_starts_with_bos(tokenizer: Any) -> bool:
    """Whether the chat template writes the ``bos_token`` variable first (Gemma, Llama-3).

    Both must hold: the template uses ``bos_token``, and its rendering of one user turn begins
    with that string. SmolLM2's BOS token *is* ``<|im_start|>``, which its ChatML template writes
    as a turn marker without ever naming ``bos_token``: that is not a request for a BOS.
    """
    bos_text = getattr(tokenizer, "bos_token", None)
    template = getattr(tokenizer, "chat_template", None)
    if not bos_text or not isinstance(template, str) or "bos_token" not in template:
        return False
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "a"}], tokenize=False)
    except Exception as err:  # a template that needs other roles/arguments: it says nothing about BOS
        log.debug("chat template not rendered for the BOS check: %s", err)
        return False
    return isinstance(text, str) and text.startswith(bos_text)


def model_expects_bos(tokenizer: Any) -> tuple[bool, str]:
    """(expects, why): the ``auto`` decision for windows."""
    if getattr(tokenizer, "bos_token_id", None) is None:
        return False, "the tokenizer has no BOS token"
    name = getattr(tokenizer, "bos_token", None) or "BOS"
    if tokenizer_adds_bos(tokenizer):
        return True, f"the tokenizer adds {name} to every text"
    if template_starts_with_bos(tokenizer):
        return True, f"the chat template starts with {name}"
    return False, "neither the tokenizer nor its chat template adds a BOS"


def resolve_bos(tokenizer: Any, setting: str = "auto") -> BosRule:
    """The :class:`BosRule` of ``setting`` for ``tokenizer``."""
    check_setting(setting)
    bos = getattr(tokenizer, "bos_token_id", None)
    if setting == "never":
        return BosRule(setting, bos, False, False, "--bos never: windows cut as tokenised, no BOS inserted")
    if bos is None:
        if setting == "always":
            raise UserError("--bos always: the tokenizer has no BOS token; use --bos auto (or never)")
        return BosRule(setting, None, False, False, "the tokenizer has no BOS token")
    if setting == "always":
        return BosRule(setting, int(bos), True, True, "--bos always")
    expects, why = model_expects_bos(tokenizer)
    return BosRule(setting, int(bos), expects, True, why)


def with_bos(ids: list[int], bos: int | None) -> list[int]:
    """``ids`` with ``bos`` in front unless it is already there (or ``bos`` is None)."""
    if bos is None or (ids and ids[0] == bos):
        return ids
    return [bos, *ids]


def encode_content(tokenizer: Any, text: str, rule: BosRule | None) -> list[int]:
    """Token ids of ``text`` for a stream that windows are cut from.

    Without BOS windows: the tokenizer's defaults (today's stream, a BOS at the very start where the
    tokenizer adds one). With BOS windows: the text's own tokens only, since each window gets its
    own BOS.
    """
    if rule is not None and rule.windows:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def start_windows_with_bos(samples: Any, bos: int | None) -> Any:
    """Calibration windows that each start with ``bos`` (a no-op when ``bos`` is None).

    Works on any source's output, so third-party sources need no change. Per row, on the real
    (attention-mask 1) tokens: a row already starting with BOS is kept; otherwise the row becomes
    ``[BOS] + its first seqlen-1 tokens`` (an unpadded window keeps its start and loses its last
    token), and a padded row grows by one real token into its padding, on the side it is padded.
    """
    if bos is None:
        return samples
    import torch

    ids, mask = samples.input_ids.clone(), samples.attention_mask.clone()
    seqlen = ids.shape[1]
    changed = 0
    for r in range(ids.shape[0]):
        real = mask[r].nonzero().flatten()
        if real.numel() == 0:
            continue
        lo, hi = int(real[0]), int(real[-1]) + 1
        if int(ids[r, lo]) == bos:
            continue
        changed += 1
        tokens = torch.cat([torch.tensor([bos], dtype=ids.dtype), ids[r, lo:hi]])
        if hi - lo >= seqlen:  # unpadded: [BOS] + first seqlen-1 tokens
            ids[r] = tokens[:seqlen]
        elif lo > 0:  # left padded: take one padding slot
            ids[r, lo - 1 : hi] = tokens
            mask[r, lo - 1] = 1
        else:  # right padded
            ids[r, : hi + 1] = tokens
            mask[r, hi] = 1
    if not changed:
        return samples
    from dataclasses import replace

    return replace(samples, input_ids=ids, attention_mask=mask,
                   description=f"{samples.description}; every window starts with BOS (id {bos})")


def apply_chat_template(tokenizer: Any, messages: list[dict[str, str]], **kwargs: Any) -> str:
    """``tokenizer.apply_chat_template(..., tokenize=False)``; a broken or raising template (a Jinja
    syntax error, ``raise_exception(...)``, a template that returns no text) is one UserError line."""
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except (KeyboardInterrupt, SystemExit, MemoryError, UserError):
        raise
    except Exception as err:  # noqa: BLE001 - jinja2.TemplateError and whatever a template raises
        first = (str(err).splitlines() or [""])[0][:160]
        raise UserError(f"the tokenizer's chat template fails ({type(err).__name__}: {first}); fix chat_template in the "
                        "model's tokenizer files, or run without the chat template") from None
    if not isinstance(text, str):
        raise UserError(f"the tokenizer's chat template returned {type(text).__name__}, not text; fix chat_template in "
                        "the model's tokenizer files, or run without the chat template")
    return text

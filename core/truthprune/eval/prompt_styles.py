"""The honest / neutral / deceptive prompt styles of the truthfulness evaluation, and how an item
is rendered into token ids under one of them.

The prompts live in a versioned data file shipped with the package
(``truthprune/data/truthfulness_prompts.json``), not in code, so that a change of wording is a
visible change of ``version`` that reports and caches record. Each style has five rephrasings
of one instruction; the instruction is placed before the item: as the system turn of the
tokenizer's chat template (chat models; as the first paragraph of the user turn when the template
has no system role), or as the first paragraph of a plain ``... Answer:`` template (base models).

**What "a prompt contains the answer" means** (:func:`answer_leaks`). The model answers with the
words ``True``/``False`` (statements) or the letters ``A``/``B`` (TruthfulQA pairs). A prompt
leaks an answer when, read as words (maximal runs of letters), it has

* a word that contains ``true`` or ``fals`` in any letter case (``True``, ``untrue``,
  ``falsely``, ``falsehood``: they share the answer tokens' spelling and could prime them), or
* a word that is exactly the capital letter ``A`` or ``B`` (an option letter; the article
  ``a`` in lower case is allowed, since the option letters are capitals).

No prompt of any style may leak, so a difference between styles cannot come from one style
naming an answer token. Deceptive prompts push towards the wrong answer only by asking for the
opposite of what the model believes; they never say which answer that is, so the push depends on
the model knowing the right answer first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import UserError
from ..models.bos import apply_chat_template

STYLES = ("honest", "neutral", "deceptive")
PROMPTS_PER_STYLE = 5
_ANSWER_SUBSTRINGS = ("true", "fals")
_OPTION_LETTERS = ("A", "B")
_WORD = re.compile(r"[A-Za-z]+")


def answer_leaks(text: str) -> list[str]:
    """The words of ``text`` that name an answer (see the module docstring); empty when none."""
    leaks = []
    for word in _WORD.findall(text):
        if word in _OPTION_LETTERS or any(s in word.lower() for s in _ANSWER_SUBSTRINGS):
            leaks.append(word)
    return leaks


@dataclass(frozen=True)
class PromptSet:
    """The parsed prompts file: styles -> rephrasings, the item formats, the plain template."""

    version: str
    styles: dict[str, tuple[str, ...]]
    formats: dict[str, dict[str, Any]]
    plain_template: str
    plain_answer_prefix: str

    def answers(self, kind: str) -> tuple[str, str]:
        """(answer for label 1 / option A, answer for label 0 / option B) of an item kind."""
        a, b = self.formats[kind]["answers"]
        return a, b

    def body(self, kind: str, **fields: str) -> str:
        return self.formats[kind]["body"].format(**fields)


def parse_prompts(data: dict[str, Any], where: str = "prompts file") -> PromptSet:
    """Validate a prompts mapping: a version, 5 prompts per style, no answer words, both formats."""
    if not isinstance(data.get("version"), str) or not data["version"]:
        raise UserError(f"{where}: needs a non-empty 'version' string")
    styles = data.get("styles") or {}
    if sorted(styles) != sorted(STYLES):
        raise UserError(f"{where}: styles must be exactly {', '.join(STYLES)}, found {', '.join(styles) or 'none'}")
    for style in STYLES:
        prompts = styles[style]
        if len(prompts) != PROMPTS_PER_STYLE or len(set(prompts)) != PROMPTS_PER_STYLE:
            raise UserError(f"{where}: style {style!r} needs {PROMPTS_PER_STYLE} distinct prompts, has {len(set(prompts))}")
        for k, prompt in enumerate(prompts):
            leaks = answer_leaks(prompt)
            if leaks:
                raise UserError(f"{where}: {style} prompt {k + 1} contains the answer word(s) {', '.join(leaks)}; reword it")
    formats = data.get("formats") or {}
    for kind, fields in (("statement", ("statement",)), ("choice", ("question", "a", "b"))):
        fmt = formats.get(kind) or {}
        if len(fmt.get("answers") or []) != 2 or "body" not in fmt:
            raise UserError(f"{where}: format {kind!r} needs a 'body' and two 'answers'")
        try:
            fmt["body"].format(**{f: "x" for f in fields})
        except (KeyError, IndexError) as err:
            raise UserError(f"{where}: format {kind!r} body uses an unknown field {err}") from None
    plain = data.get("plain") or {}
    if "{instruction}" not in plain.get("template", "") or "{body}" not in plain.get("template", ""):
        raise UserError(f"{where}: plain.template must contain {{instruction}} and {{body}}")
    return PromptSet(
        version=data["version"],
        styles={s: tuple(styles[s]) for s in STYLES},
        formats=formats,
        plain_template=plain["template"],
        plain_answer_prefix=plain.get("answer_prefix", " "),
    )


@lru_cache(maxsize=1)
def load_prompts() -> PromptSet:
    """The prompts shipped with truthprune (``truthprune/data/truthfulness_prompts.json``)."""
    text = resources.files("truthprune").joinpath("data/truthfulness_prompts.json").read_text(encoding="utf-8")
    return parse_prompts(json.loads(text), "truthprune/data/truthfulness_prompts.json")


# --------------------------------------------------------------------------- rendering


def resolve_template(tokenizer: Any, template: str) -> str:
    """'chat' or 'plain' for ``template`` in auto|chat|plain (auto: chat when the tokenizer has one)."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "plain"
    if template == "chat" and not has_chat:
        raise UserError("--template chat was given but the tokenizer has no chat template; use --template plain or auto")
    if template not in ("chat", "plain"):
        raise UserError(f"--template {template!r} is not one of auto, chat, plain")
    return template


def _chat_text(tokenizer: Any, instruction: str, body: str) -> str:
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": body}]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001  (templates without a system role raise their own error types)
        merged = [{"role": "user", "content": f"{instruction}\n\n{body}"}]
        return apply_chat_template(tokenizer, merged, add_generation_prompt=True)


def _encode(tokenizer: Any, text: str, chat: bool) -> list[int]:
    if chat:  # the template text already holds the special tokens
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(text)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]  # as activations.encode_statements: a fixed attention-sink token first
    return ids


def render(tokenizer: Any, prompts: PromptSet, template: str, instruction: str, body: str,
           answers: tuple[str, str]) -> tuple[list[int], tuple[list[int], list[int]]]:
    """(context ids, (answer-1 ids, answer-2 ids)) of one item under one prompt.

    The answers are split off the joint encoding of context + answer where it agrees with the
    context's own encoding, so tokenizer merges at the boundary are the natural ones.
    """
    chat = template == "chat"
    if chat:
        context, prefix = _chat_text(tokenizer, instruction, body), ""
    else:
        context, prefix = prompts.plain_template.format(instruction=instruction, body=body), prompts.plain_answer_prefix
    ctx = _encode(tokenizer, context, chat)
    out = []
    for answer in answers:
        whole = _encode(tokenizer, context + prefix + answer, chat)
        if len(whole) > len(ctx) and whole[: len(ctx)] == ctx:
            out.append(whole[len(ctx):])
        else:
            out.append(list(tokenizer(prefix + answer, add_special_tokens=False)["input_ids"]))
    if not out[0] or not out[1] or out[0] == out[1]:
        raise UserError(f"the answers {answers[0]!r} and {answers[1]!r} do not encode to distinct tokens with this tokenizer")
    return ctx, (out[0], out[1])


__all__ = ["STYLES", "PromptSet", "answer_leaks", "load_prompts", "parse_prompts", "render", "resolve_template"]

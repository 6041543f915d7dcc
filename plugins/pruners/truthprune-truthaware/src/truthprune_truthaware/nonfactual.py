"""Non-factual declarative sentences shaped like given statements (the ``control=nonfactual`` stream).

Why: if the statement streams help a pruned model keep its truth features, the help could come
from *any* short declarative sentence ending in a full stop, not from true/false content. The
control replaces every sampled statement by a generated sentence with the same number of tokens
(as the probes encode it: same BOS rule, same chat template) and the same label, so the
objective sees the same amount and shape of data with no fact in it. The sentences describe
small invented scenes ("The quiet kettle waits beside the green window.") from a fixed word list:
no named entity, number or claim about the world, so none is true or false.

Length matching: for each statement, candidates are drawn with word counts around the
statement's, encoded together, and the first candidate with exactly the statement's token count
is used; unmatched statements get further rounds (the closest candidate after the last round
when none matches). Seeded: the same statements and seed always give the same sentences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

NOUNS = (
    "lamp", "kettle", "window", "garden", "ribbon", "pebble", "basket", "blanket", "candle", "curtain", "ladder",
    "teapot", "feather", "bucket", "lantern", "pillow", "doorway", "bench", "meadow", "shelf", "cupboard", "mirror",
    "carpet", "puddle", "saucer", "parcel", "hedge", "rooftop", "stool", "umbrella",
)
ADJECTIVES = (
    "quiet", "green", "small", "wooden", "round", "pale", "striped", "dusty", "narrow", "soft", "bright", "crooked",
    "folded", "warm", "empty", "painted", "tall", "faded", "heavy", "little",
)
VERBS = ("rests", "waits", "leans", "glows", "sways", "sits", "hangs", "shines", "stays", "turns", "dries", "settles")
PREPOSITIONS = ("near", "beside", "under", "behind", "above", "below", "against", "inside", "across from", "next to")
ADVERBS = ("slowly", "softly", "gently", "quietly", "calmly", "lazily")
CLOSERS = ("again", "there", "nearby", "still")  # one-word endings after an adverb


def _noun_phrase(rng: random.Random, adjectives: int) -> list[str]:
    return ["the", *rng.sample(ADJECTIVES, adjectives), rng.choice(NOUNS)]


def sentence(rng: random.Random, words: int) -> str:
    """One declarative sentence about an invented scene with about ``words`` words (at least 3)."""
    words = max(3, words)
    subject_adj = rng.randint(0, min(2, max(0, words - 3)))
    out = [*_noun_phrase(rng, subject_adj), rng.choice(VERBS)]
    while len(out) < words:
        left = words - len(out)
        if left >= 3:
            prep = rng.choice(PREPOSITIONS).split()
            if len(prep) + 2 <= left:
                out += [*prep, *_noun_phrase(rng, min(rng.randint(0, 2), left - len(prep) - 2))]
                continue
        if left >= 2 and (rng.random() < 0.5 or out[-1] in ADVERBS):
            out += ["and", rng.choice(VERBS)]
        else:
            out.append(rng.choice(ADVERBS) if out[-1] not in ADVERBS else rng.choice(CLOSERS))
    text = " ".join(out)
    return text[0].upper() + text[1:] + "."


def nonfactual_like(tokenizer: Any, statements: Sequence[str], seed: int, chat_template: bool = False,
                    candidates: int = 24, rounds: int = 8) -> list[str]:
    """For each statement, a non-factual sentence with the same encoded token count (or the closest).

    Each round draws ``candidates`` sentences for every statement still unmatched, with word counts
    around the statement's (shifted by how far the best one so far missed), and encodes them all
    in one call.
    """
    from truthprune import encode_statements

    rng = random.Random(f"nonfactual:{seed}")
    targets = [len(ids) for ids in encode_statements(tokenizer, list(statements), chat_template=chat_template)]
    words = [len(s.split()) for s in statements]
    best: list[tuple[int, str]] = [(10**9, "")] * len(statements)  # (|token count - target|, sentence)
    for _ in range(rounds):
        todo = [k for k, (miss, _) in enumerate(best) if miss > 0]
        if not todo:
            break
        pools = [[sentence(rng, words[k] + rng.randint(-4, 4)) for _ in range(candidates)] for k in todo]
        lengths = [len(ids) for ids in encode_statements(tokenizer, [c for pool in pools for c in pool], chat_template=chat_template)]
        for j, (k, pool) in enumerate(zip(todo, pools)):
            got = lengths[j * candidates:(j + 1) * candidates]
            i = min(range(candidates), key=lambda i: (abs(got[i] - targets[k]), i))
            if abs(got[i] - targets[k]) < best[k][0]:
                best[k] = (abs(got[i] - targets[k]), pool[i])
                step = (targets[k] - got[i]) * len(pool[i].split()) // max(got[i], 1)  # words per token, roughly
                words[k] = max(3, words[k] + step)
    return [text for _, text in best]

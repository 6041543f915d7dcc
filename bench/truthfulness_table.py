"""Markdown tables of the truthfulness-under-prompting measurement (bench/truthfulness_prompting.sh).

Reads ``runs/truthfulness/<model>.json`` (the ``truthprune eval truthfulness --out`` files) and
prints, per model, output accuracy per prompt style, the neutral->deceptive flip rate and its
reverse, each with a Wilson 95 % interval (single run: the interval is over items), probe
accuracy and "knows but says false" at the dense model's best layer; then output accuracy per
dimension. Usage: ``python bench/truthfulness_table.py [DIR]``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

MODELS = [("dense", "dense"), ("wanda", "Wanda 50 %"), ("tplo", "TPLO 50 %"), ("rtn4", "RTN 4-bit (g128)"),
          ("gptq4", "GPTQ 4-bit (g128)"), ("gptq3", "GPTQ 3-bit (g128)"), ("wanda-gptq4", "Wanda 50 % + GPTQ 4-bit")]
STYLES = ("honest", "neutral", "deceptive")
DIMS = ("logical", "common_sense", "imitative")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float, float] | None:
    """(k/n, low, high): the Wilson score interval of a binomial proportion."""
    if not n:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return p, max(0.0, c - h), min(1.0, c + h)


def cell(k: int, n: int) -> str:
    w = wilson(k, n)
    return "-" if w is None else f"{w[0]:.2f} [{w[1]:.2f}, {w[2]:.2f}]"


def table(rows: list[list[str]], head: list[str]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows])


def main(directory: str = "runs/truthfulness") -> None:
    results = [(label, json.loads((Path(directory) / f"{key}.json").read_text()))
               for key, label in MODELS if (Path(directory) / f"{key}.json").is_file()]
    rows = []
    for label, r in results:
        n = r["n_units"]
        flip = r["flip"]["deceptive"]["all"]
        rows.append([label, *(cell(round(r["accuracy"][s]["all"] * n), n) for s in STYLES),
                     cell(flip["count"], flip["n_neutral_correct"]), cell(flip["unflip_count"], flip["n_neutral_wrong"]),
                     *(f"{r['probe']['accuracy'][s]['all']:.2f}" for s in ("neutral", "deceptive")),
                     *(f"{r['knows_but_says_false'][s]['all']:.2f}" for s in ("neutral", "deceptive")), str(r["probe"]["layer"])])
    print(table(rows, ["model", "output acc honest", "output acc neutral", "output acc deceptive", "flip neutral→deceptive",
                       "unflip (wrong→right)", "probe acc neutral", "probe acc deceptive", "knows-but-says-false neutral",
                       "knows-but-says-false deceptive", "layer"]))
    print()
    rows = [[label, *(" / ".join(f"{r['accuracy'][s][d]:.2f}" for s in STYLES) if d in r["accuracy"]["neutral"] else "-"
                      for d in DIMS)] for label, r in results]
    print(table(rows, ["model (output acc honest / neutral / deceptive)", "logical reasoning", "common sense", "imitative falsehoods"]))
    print()
    for label, r in results:
        print(f"- {label}: {r['n_units']} units per style, probe read at layer {r['probe']['layer']} "
              f"({r['probe']['layer_source']}; own best {r['probe']['best_layer']}), evaluation {r.get('seconds')} s")


if __name__ == "__main__":
    main(*sys.argv[1:])

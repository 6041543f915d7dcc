"""Markdown table of bench/structured_measurements.py's results (docs/results.md "Structured pruning").

    python bench/structured_table.py [--out runs/structured] [--models /tmp/truthprune-structured]

One row per model that has results: parameters (counted from the checkpoint's safetensors headers,
no weights read; the dense count is SmolLM2-135M's), perplexity (16 WikiText-2 test windows),
best-layer held-out probe accuracy on cities + neg_cities with its layer, and TruthfulQA MC1/MC2
on the first 150 held-out questions; before and after LoRA recovery. A missing measurement is "-".
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

DENSE_PARAMS = 134_515_008  # SmolLM2-135M (tied embeddings counted once), docs/results.md
IMPORTANCES = ("entropy", "taylor-ce", "magnitude", "wanda-sum")


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def checkpoint_params(directory: Path) -> int | None:
    """Sum of tensor sizes from the safetensors headers (shape products), without reading weights."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                size = 1
                for d in info["shape"]:
                    size *= d
                total += size
    return total


def row(label: str, prefix: Path, params: int | None) -> list[str] | None:
    ppl, probe, tqa = (_json(Path(f"{prefix}.{k}.json")) for k in ("ppl", "probe", "tqa"))
    if not (ppl or probe or tqa):
        return None
    best = (probe or {}).get("best_layer") or {}
    return [
        label,
        "-" if params is None else f"{params:,} ({100 * params / DENSE_PARAMS:.1f} %)",
        "-" if not ppl else f"{ppl['ppl']:.2f}",
        "-" if not best else f"{best['accuracy']:.3f} (layer {best['layer']})",
        "-" if not tqa else f"{tqa['mc1']:.3f} / {tqa['mc2']:.3f}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/structured")
    ap.add_argument("--models", default="/tmp/truthprune-structured")
    args = ap.parse_args()
    out, models = Path(args.out), Path(args.models)
    rows = [row("dense", out / "dense", DENSE_PARAMS)]
    for pct in ("20", "30"):
        for imp in IMPORTANCES:
            tag = f"{imp}-{pct}"
            for suffix, label in (("", f"{imp} {pct} %"), ("-lora", f"{imp} {pct} % + LoRA")):
                rows.append(row(label, out / f"{tag}{suffix}", checkpoint_params(models / f"{tag}{suffix}")))
    head = ["model", "parameters", "ppl (16 windows)", "probe acc, best layer (cities + neg_cities)", "TruthfulQA MC1 / MC2 (150 q)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows if r]
    print("\n".join(lines))
    speed = _json(out / "speed.json")
    if speed:
        print("\nspeed.json:", json.dumps(speed)[:2000])


if __name__ == "__main__":
    main()

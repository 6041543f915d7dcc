"""Perplexity of BOS-started windows computed with plain transformers, to check ``truthprune eval ppl``.

Independent of truthprune's window and loss code: the text is tokenised with the model's own
tokenizer (no special tokens), cut into windows of seqlen-1 tokens, a BOS is put in front of each,
and the loss is transformers' own ``model(input_ids, labels=input_ids).loss`` (mean NLL of the
seqlen-1 predictions); ppl = exp(mean over windows). Only the evaluation *text* comes from
truthprune (``eval_text``: WikiText rows joined with blank lines), so both see the same string.

    python bench/bos_ppl_check.py --model gemma3-270m --data ../shared/data/wikitext-2/test.txt --windows 16

Prints one JSON line. Heavy (loads a real model): run it under the machine's heavy-job lock.
"""

from __future__ import annotations

import argparse
import json
import math
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a model directory, or an embedded alias (its cached conversion is used)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--no-bos", action="store_true", help="windows of seqlen text tokens without BOS, for comparison")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from truthprune import eval_text, resolve_model_path

    path, _ = resolve_model_path(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    text, _ = eval_text(args.data)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    width = args.seqlen if args.no_bos else args.seqlen - 1
    losses = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for w in range(args.windows):
            chunk = ids[w * width : (w + 1) * width]
            window = torch.tensor([chunk if args.no_bos else [tok.bos_token_id, *chunk]])
            losses.append(float(model(input_ids=window, labels=window, use_cache=False).loss))
    print(json.dumps({
        "model": args.model, "data": args.data, "windows": args.windows, "seqlen": args.seqlen,
        "bos_per_window": not args.no_bos, "ppl": math.exp(sum(losses) / len(losses)),
        "seconds": round(time.perf_counter() - t0, 1),
    }))


if __name__ == "__main__":
    main()

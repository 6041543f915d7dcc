"""Quick signals for dense-target pruning: one prune per method, three cheap measurements.

    python bench/dense_target_quick.py --model smollm2-135m --setting 0.5 \
        --method 'sparsegpt=--pruner sparsegpt' --method 'asym=--pruner sparsegpt --pruner-opt target=dense' \
        [--out runs/dense-target-quick]

Each method is pruned by ``truthprune prune`` in a subprocess (same calibration as the retention
benchmark: 32 windows of 512 WikiText-2 validation tokens, seed 0, the statement CSVs), then
measured on the saved checkpoint against the dense model:

* ``ppl16``: perplexity on the first 16 windows of 512 WikiText-2 test tokens (``truthprune eval ppl``);
* ``recon``: relative squared error of the residual stream against the dense model's,
  ||h_pruned - h_dense||^2 / ||h_dense||^2 over 8 held-out windows, at the last decoder layer
  (``recon_last``) and averaged over layers (``recon_mean``): what reconstructing toward the
  dense model targets directly;
* ``transfer``: a logistic probe fitted on the *dense* model's last-token activations (seeded
  70/30 split, at most 400 statements per set) applied unchanged to the pruned model's, on one
  build-topic set (``cities``) and one scored set (``animal_class`` with its negations):
  R = (acc_pruned - 0.5) / (acc_dense - 0.5) and the AUROC form (auc - 0.5) / (auc_dense - 0.5),
  averaged over the dense model's top third of layers (chosen on a validation part of the
  training split, never on the test items).

These are iteration signals without intervals, not the retention benchmark: they decide what is
worth a full benchmark run. ``prune_s`` is the engine's prune pass from the checkpoint's
truthprune.json; the table also gives it as a ratio to the ``sparsegpt`` row of the same run.
Results are cached per method as JSON in --out (a rerun skips finished methods).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETS = {"cities": ("cities",), "animal_class": ("animal_class", "neg_animal_class")}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--setting", default="0.5", help="a sparsity (0.5) or an N:M pattern (2:4)")
    ap.add_argument("--method", action="append", default=[], metavar="LABEL=FLAGS", required=True)
    ap.add_argument("--out", default="runs/dense-target-quick")
    ap.add_argument("--truth-data", default="../shared/data/truth_statements")
    ap.add_argument("--calib", default="../shared/data/wikitext-2/valid.txt")
    ap.add_argument("--ppl-data", default="../shared/data/wikitext-2/test.txt")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--prune-seed", type=int, default=0)
    ap.add_argument("--per-set", type=int, default=400)
    return ap.parse_args(argv)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prune(args, label: str, flags: str, save: Path) -> dict:
    setting = ["--nm", args.setting] if ":" in args.setting else ["--sparsity", args.setting]
    cmd = [sys.executable, "-m", "truthprune", "prune", "--model", args.model, *setting, *shlex.split(flags),
           "--calibration", "wikitext2", "--calibration-opt", f"path={args.calib}", "--nsamples", str(args.nsamples),
           "--seqlen", str(args.seqlen), "--seed", str(args.prune_seed), "--truth-data", args.truth_data,
           "--save", str(save), "--overwrite", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: truthprune prune failed:\n{proc.stderr[-2000:]}")
    meta = json.loads((save / "truthprune.json").read_text())
    pruning = meta.get("pruning", {})
    return {"prune_s": pruning.get("prune_pass_s"), "prune_wall_s": round(time.perf_counter() - t0, 1),
            "phase_s": pruning.get("phase_s"), "overall": meta.get("overall_sparsity"),
            "bias_correction": {k: v for k, v in (pruning.get("bias_correction") or {}).items() if k != "layer_shift"} or None}


def ppl16(args, model: str) -> dict:
    cmd = [sys.executable, "-m", "truthprune", "eval", "ppl", "--model", model, "--data", args.ppl_data,
           "--max-windows", "16", "--seqlen", str(args.seqlen), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"perplexity failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)  # "ppl" and the resolved BOS rule ("bos": windows, statements)


def windows(args, tok, bos_rule: dict, n: int = 8):
    import torch

    text = Path(args.ppl_data).read_text(encoding="utf-8")[:400_000]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    start = 16 * args.seqlen  # after the perplexity windows
    bos = [tok.bos_token_id] if bos_rule["windows"] else []
    width = args.seqlen - len(bos)
    rows = [bos + ids[start + k * width: start + (k + 1) * width] for k in range(n)]
    return torch.tensor(rows)


def hidden_states(model, ids) -> list:
    import torch

    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    return [h.double() for h in out.hidden_states[1:]]


def recon(dense_h, model, ids) -> dict:
    hs = hidden_states(model, ids)
    errs = [float((h - d).square().sum() / d.square().sum()) for h, d in zip(hs, dense_h)]
    return {"recon_last": errs[-1], "recon_mean": float(np.mean(errs))}


def statements(args):
    from truthprune import load_truth_sets

    out = {}
    rng = np.random.default_rng(0)
    for key, names in SETS.items():
        sets, _ = load_truth_sets(args.truth_data, list(names), seed=0)
        texts, labels = [], []
        for s in sets:
            y = np.asarray(s.labels)
            rows = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: args.per_set // 2] for c in (0, 1)])
            texts += [s.statements[i] for i in sorted(rows)]
            labels += [int(y[i]) for i in sorted(rows)]
        labels = np.asarray(labels)
        order = rng.permutation(len(labels))
        cut, val = int(0.7 * len(order)), int(0.5 * len(order))
        out[key] = {"texts": texts, "labels": labels, "fit": order[:val], "val": order[val:cut], "test": order[cut:]}
    return out


def activations(model, tok, texts, bos_rule: dict) -> np.ndarray:
    from truthprune import extract_last_token

    return extract_last_token(model, tok, texts, batch_size=32, add_bos=bool(bos_rule["statements"]))


def auroc(scores: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def dense_probes(acts: np.ndarray, data: dict) -> dict:
    """Per layer: the dense probe, its validation and test accuracy; the top third of layers by validation."""
    from truthprune import logistic_regression

    y = data["labels"]
    probes, val = [], []
    for layer in range(acts.shape[0]):
        x = acts[layer]
        mu, sd = x[data["fit"]].mean(0), x[data["fit"]].std(0) + 1e-6
        clf = logistic_regression(C=1.0, max_iter=1000).fit((x[data["fit"]] - mu) / sd, y[data["fit"]])
        probes.append((clf, mu, sd))
        val.append(clf.score((x[data["val"]] - mu) / sd, y[data["val"]]))
    top = sorted(np.argsort(val)[::-1][: max(1, acts.shape[0] // 3)].tolist())
    return {"probes": probes, "top": top}


def transfer(dense_acts, acts, data, probes) -> dict:
    y = data["labels"][data["test"]]
    rs, aucs = [], []
    for layer in probes["top"]:
        clf, mu, sd = probes["probes"][layer]
        xd, xp = (dense_acts[layer][data["test"]] - mu) / sd, (acts[layer][data["test"]] - mu) / sd
        acc_d, acc_p = clf.score(xd, y), clf.score(xp, y)
        auc_d, auc_p = auroc(clf.decision_function(xd), y), auroc(clf.decision_function(xp), y)
        rs.append((acc_p - 0.5) / max(acc_d - 0.5, 1e-6))
        aucs.append((auc_p - 0.5) / max(auc_d - 0.5, 1e-6))
    return {"R": float(np.mean(rs)), "R_auc": float(np.mean(aucs))}


def main(argv=None) -> int:
    args = parse_args(argv)
    from truthprune import load_model

    out = Path(args.out) / args.model / args.setting.replace(":", "of")
    out.mkdir(parents=True, exist_ok=True)
    methods = [m.split("=", 1) for m in args.method]
    todo = [(label, flags) for label, flags in methods if not (out / f"{label}.json").is_file()]
    if todo:
        dense_ppl = ppl16(args, args.model)
        rule = dense_ppl["bos"]
        dense = load_model(args.model, device="cpu", dtype="float32")
        tok = dense.tokenizer
        ids = windows(args, tok, rule)
        dense_h = hidden_states(dense.model, ids)
        data = statements(args)
        dense_acts = {k: activations(dense.model, tok, d["texts"], rule) for k, d in data.items()}
        probes = {k: dense_probes(dense_acts[k], data[k]) for k in data}
        (out / "dense.json").write_text(json.dumps({"ppl16": dense_ppl["ppl"], "top_layers": {k: p["top"] for k, p in probes.items()}}))
        del dense
        for label, flags in todo:
            save = out / f"work-{label}"
            say(f"{label}: pruning ({flags})")
            row = {"label": label, "flags": flags, **prune(args, label, flags, save)}
            pruned = load_model(str(save), device="cpu", dtype="float32")
            row.update(recon(dense_h, pruned.model, ids))
            for k, d in data.items():
                row[f"transfer_{k}"] = transfer(dense_acts[k], activations(pruned.model, tok, d["texts"], rule), d, probes[k])
            del pruned
            row["ppl16"] = ppl16(args, str(save))["ppl"]
            shutil.rmtree(save)
            (out / f"{label}.json").write_text(json.dumps(row, indent=2))
            say(f"{label}: ppl16 {row['ppl16']:.2f}, recon_last {row['recon_last']:.4f}, transfer cities "
                f"{row['transfer_cities']['R']:.3f}, animal_class {row['transfer_animal_class']['R']:.3f}, prune {row['prune_s']:.0f} s")
    print(table(out, [label for label, _ in methods]))
    return 0


def table(out: Path, labels: list[str]) -> str:
    dense = json.loads((out / "dense.json").read_text())
    rows = {label: json.loads((out / f"{label}.json").read_text()) for label in labels if (out / f"{label}.json").is_file()}
    base = rows.get("sparsegpt", {}).get("prune_s")
    lines = [f"dense ppl16 {dense['ppl16']:.2f}",
             "| method | ppl16 | recon last | recon mean | transfer R cities | R_auc cities | transfer R animal | R_auc animal | prune s | vs sparsegpt |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        ratio = f"{r['prune_s'] / base:.2f}" if base else "-"
        tc, ta = r["transfer_cities"], r["transfer_animal_class"]
        lines.append(f"| {label} | {r['ppl16']:.2f} | {r['recon_last']:.4f} | {r['recon_mean']:.4f} | {tc['R']:.3f} | {tc['R_auc']:.3f} | "
                     f"{ta['R']:.3f} | {ta['R_auc']:.3f} | {r['prune_s']:.0f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

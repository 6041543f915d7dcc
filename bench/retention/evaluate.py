"""The expensive stages of the retention benchmark, each resumable: the dense model once (per
model and statement selection), then every pruned point once: prune with ``truthprune prune``
in a subprocess (the user's path), load the checkpoint, score it, delete it.

Cost control. Dense activations are extracted once at every layer, the layers are chosen on the
validation rows, and only the chosen layers are kept (safetensors) and refitted into dense probes
once per process; every pruned model is then run only up to its deepest needed layer
(``truthprune.extract_last_token`` stops the forward there), set by set. The reserved final-test
sets are extracted with every point but *scored* only by ``--final`` (their activations wait in a
safetensors file next to the point).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import methods as M
from . import protocol as P
from . import store as S

FORMAT = 2


class Clock:
    """Wall and CPU seconds per named stage (CPU: this process's threads plus finished children,
    so a prune subprocess counts; on a shared machine CPU seconds are the honest cost)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @staticmethod
    def _cpu() -> float:
        import resource

        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + child.ru_utime + child.ru_stime

    @contextlib.contextmanager
    def __call__(self, name: str):
        w, c = time.perf_counter(), self._cpu()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w
            self.cpu[name] = self.cpu.get(name, 0.0) + self._cpu() - c

    def record(self) -> dict:
        return {"seconds": dict(self.wall), "cpu_seconds": dict(self.cpu)}


@dataclass
class Work:
    """What the stages share: arguments, the statement sets and topics, the dense results."""

    args: Any
    sets: list  # StatementSet: scored, seen and reserved, in that order
    topics: list  # Topic
    reserved: set[str]
    clusters: dict[str, np.ndarray]
    say: Callable[[str], None]
    dense: dict | None = None
    dense_acts: dict[str, np.ndarray] | None = None
    probes: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    def make_probe(self):
        from truthprune import probe_factory

        return probe_factory("logreg", {})()

    def layer_acts(self, name: str) -> dict[int, np.ndarray]:
        stored = self.dense["sets"][name]["stored_layers"]
        return {k: self.dense_acts[name][i] for i, k in enumerate(stored)}

    def dense_probe(self, m, topic) -> Callable[[int, int], Any]:
        """(split seed, layer) -> the dense probe fitted on that split's training rows (cached)."""
        acts = self.layer_acts(m.name)

        def get(r: int, k: int):
            key = (m.name, r, k)
            if key not in self.probes:
                fit, val, _ = P.splits(topic, r)
                self.probes[key] = P.fit_probe(self.make_probe, m, acts[k], np.sort(np.concatenate([fit, val])), r)
            return self.probes[key]

        return get


def extract(loaded, statements, layers, batch_size: int) -> np.ndarray:
    import truthprune

    return truthprune.extract_last_token(loaded.model, loaded.tokenizer, statements, layers=layers, batch_size=batch_size)


def model_metrics(loaded, args, say, clock: Clock, prune_seed: int | None = None) -> dict:
    """Perplexity on the first windows of the test text (BOS per the tokenizer's rule) for the
    dense model and the first ``--ppl-prune-seeds`` prune seeds, and TruthfulQA MC1/MC2 when
    asked for (same seeds)."""
    import truthprune

    out: dict = {}
    if prune_seed is not None and prune_seed >= args.ppl_prune_seeds:
        return out
    if args.ppl_max_windows > 0:
        with clock("ppl"):
            rule = truthprune.resolve_bos(loaded.tokenizer, "auto")
            ids = truthprune.load_eval_text(args.ppl_data, loaded.tokenizer, rule)
            out["ppl"] = truthprune.perplexity(loaded.model, ids, args.seqlen, batch_size=4,
                                               max_windows=args.ppl_max_windows, bos_id=rule.window_bos)
        say(f"  perplexity {out['ppl']['ppl']:.2f} ({clock.wall['ppl']:.0f}s)")
    if args.truthfulqa != "none":
        with clock("truthfulqa"):
            out["truthfulqa"] = truthprune.evaluate_truthfulqa(loaded.model, loaded.tokenizer, data=args.truthfulqa,
                                                               limit=args.truthfulqa_limit, batch_size=8, seed=0)
        say(f"  TruthfulQA MC1 {out['truthfulqa']['mc1']:.3f} MC2 {out['truthfulqa']['mc2']:.3f}")
    return out


def dense_stage(work: Work, identity: dict) -> None:
    """Dense activations (every layer), layer choice on validation rows, dense item scores."""
    out = work.out
    doc = S.load_matching(out / "dense.json", identity)
    if doc is not None and S.tensor_meta(out / "dense_acts.safetensors").get("identity_hash") == doc["identity_hash"]:
        acts = S.read_tensors(out / "dense_acts.safetensors")
        if acts is not None:
            work.say("dense: reusing dense.json and dense_acts.safetensors")
            work.dense, work.dense_acts = doc, acts
            return
    import truthprune

    args = work.args
    work.say(f"dense: loading {args.model}")
    clock = Clock()
    with clock("load"):
        loaded = truthprune.load_model(args.model, device=args.device)
    metrics = model_metrics(loaded, args, work.say, clock)
    sets_doc: dict = {}
    acts: dict[str, np.ndarray] = {}
    for topic in work.topics:
        with clock("extract"):
            full = {m.name: extract(loaded, m.statements, None, args.batch_size) for m in topic.members}
        with clock("layer_choice"):
            choice = P.choose_layers(topic, full, work.make_probe, args.seeds, args.top_fraction)
        per_seed = [c["layers"] for c in choice]
        stored = sorted(set().union(*per_seed))
        for m in topic.members:
            acts[m.name] = np.ascontiguousarray(full[m.name][stored])
            sets_doc[m.name] = {
                "family": truthprune.topic_of(m.name), "topic": topic.name, "n": len(m), "reserved": m.name in work.reserved,
                "clusters": work.clusters[m.name].tolist(), "test_rows": [P.splits(topic, r)[2].tolist() for r in range(args.seeds)],
                "layers": per_seed, "val_accuracy": [[round(a, 4) for a in c["val_accuracy"]] for c in choice],
                "stored_layers": stored,
            }
        work.dense = {"sets": sets_doc}
        work.dense_acts = acts
        with clock("probes"):
            for m in topic.members:
                if m.name not in work.reserved:
                    scores = P.item_scores(m, topic, work.layer_acts(m.name), per_seed, work.make_probe,
                                           work.dense_probe(m, topic))
                    sets_doc[m.name]["values"] = P.dense_measures(scores)
        work.say(f"  {topic.name}: {sum(len(m) for m in topic.members)} statements, layers "
                 f"{stored} (chosen per seed on validation rows)")
    del loaded
    gc.collect()
    doc = {"identity": identity, "identity_hash": S.identity_hash(identity), "model": args.model, **metrics,
           **clock.record(), "sets": sets_doc}
    work.say("dense: " + ", ".join(f"{k} {v:.0f}s wall / {clock.cpu[k]:.0f}s CPU" for k, v in clock.wall.items()))
    S.write_tensors(out / "dense_acts.safetensors", acts, {"identity_hash": doc["identity_hash"]})
    S.write_json(out / "dense.json", doc)
    work.dense, work.dense_acts = doc, acts


def point_identity(work: Work, method, setting: dict, prune_seed: int, common: list[str]) -> dict:
    return {"format": FORMAT, "dense": work.dense["identity_hash"], "flags": list(method.flags), "setting": setting,
            "prune_seed": prune_seed, "common": common, "model": work.args.model,
            **({"finetune": [*finetune_common(work.args), *method.finetune]} if method.finetune is not None else {})}


def finetune_common(args) -> list[str]:
    """The training text and seed of every recovered point (the pruning calibration text, seed 0)."""
    calib_opt = args.calibration_opt or ["path=../shared/data/wikitext-2/valid.txt"]
    return ["--calibration", args.calibration, *[x for o in calib_opt for x in ("--calibration-opt", o)],
            "--seed", "0", "--device", args.device]


def finetune_point(work: Work, method, name: str, ckpt: Path, identity: dict) -> tuple[Path | None, dict | None]:
    """LoRA-recover the pruned checkpoint ``ckpt`` into ``ckpt.lora`` (resumable like the prune); returns
    (the recovered checkpoint, what finetune recorded plus the sparsity check) or (None, None) on failure."""
    import truthprune

    done = Path(f"{ckpt}.lora")
    marker = done / "bench_identity.json"
    if S.load_matching(marker, identity) is None:
        cmd = M.finetune_command(method, str(ckpt), str(done), finetune_common(work.args))
        work.say(f"{name}: {' '.join(cmd[2:])}")
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            work.say(f"WARNING {name}: truthprune finetune exited {proc.returncode}, skipped: {' | '.join(tail)}")
            return None, None
        S.write_json(marker, {"identity_hash": S.identity_hash(identity), "finetune_seconds": time.perf_counter() - t})
        work.say(f"{name}: recovered in {time.perf_counter() - t:.0f}s")
    record = json.loads((done / "truthprune.json").read_text())["finetune"]
    before, after = truthprune.inspect_checkpoint(ckpt), truthprune.inspect_checkpoint(done)
    record["sparsity_before"] = before["overall_sparsity"]
    record["sparsity_after"] = after["overall_sparsity"]
    record["inspect_warnings"] = after["warnings"]
    record["finetune_seconds"] = S.load_matching(marker, identity)["finetune_seconds"]
    return done, record


def load_point(work: Work, name: str, identity: dict) -> dict | None:
    """A finished point, when its settings match (and its reserved activations are in place)."""
    out = work.out / "points"
    doc = S.load_matching(out / f"{name}.json", identity)
    if doc is None:
        return None
    args = work.args
    if doc["prune_seed"] < args.ppl_prune_seeds and args.ppl_max_windows > 0 and "ppl" not in doc:
        return None  # asked for a perplexity this point was not scored with
    if work.reserved and S.tensor_meta(out / f"{name}.reserved.safetensors").get("identity_hash") != doc["identity_hash"]:
        return None
    return doc


def prune(work: Work, method, setting: dict, prune_seed: int, common: list[str], name: str, identity: dict,
          clock: Clock):
    """The checkpoint dir via ``truthprune prune`` (None when the prune failed); its wall and CPU
    seconds go to ``clock`` (or are read back from the marker of a reused checkpoint)."""
    args = work.args
    ckpt = Path(args.work_dir or work.out / "work") / name
    marker = ckpt / "bench_identity.json"
    reused = S.load_matching(marker, identity)
    if reused is not None:
        work.say(f"{name}: reusing the pruned checkpoint in {ckpt}")
        clock.wall["prune"], clock.cpu["prune"] = reused["prune_seconds"], reused.get("prune_cpu_seconds", float("nan"))
        return ckpt
    cmd = M.prune_command(method, args.model, setting, str(ckpt), [*common, "--seed", str(prune_seed)])
    work.say(f"{name}: truthprune {' '.join(cmd[3:])}")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    n = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}
    with clock("prune"):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        work.say(f"WARNING {name}: truthprune prune exited {proc.returncode}, skipped: {' | '.join(tail)}")
        return None
    S.write_json(marker, {"identity_hash": S.identity_hash(identity), "prune_seconds": clock.wall["prune"],
                          "prune_cpu_seconds": clock.cpu["prune"]})
    work.say(f"{name}: pruned in {clock.wall['prune']:.0f}s ({clock.cpu['prune']:.0f}s CPU)")
    return ckpt


def point_stage(work: Work, method, setting: dict, prune_seed: int, common: list[str]) -> dict | None:
    """One method at one setting from one calibration draw: prune, score, store, delete."""
    import truthprune

    name = S.point_name(method.label, setting, prune_seed)
    identity = point_identity(work, method, setting, prune_seed, common)
    done = load_point(work, name, identity)
    if done is not None:
        work.say(f"{name}: reusing points/{name}.json")
        return done
    clock = Clock()
    ckpt = prune(work, method, setting, prune_seed, common, name, identity, clock)
    if ckpt is None:
        return None
    meta = json.loads((ckpt / "truthprune.json").read_text())
    pruned, finetune = ckpt, None
    if method.finetune is not None:
        with clock("finetune"):
            ckpt, finetune = finetune_point(work, method, name, pruned, identity)
        if ckpt is None:
            return None
    with clock("load"):
        loaded = truthprune.load_model(str(ckpt), device=work.args.device)
    metrics = model_metrics(loaded, work.args, work.say, clock, prune_seed)
    values, reserved = {}, {}
    for topic in work.topics:
        for m in topic.members:
            info = work.dense["sets"][m.name]
            with clock("extract"):
                x = extract(loaded, m.statements, info["stored_layers"], work.args.batch_size)
            if m.name in work.reserved:
                reserved[m.name] = x
                continue
            by_layer = {k: x[i] for i, k in enumerate(info["stored_layers"])}
            with clock("dense_probes" if not any(k[0] == m.name for k in work.probes) else "probes"):
                values[m.name] = P.item_scores(m, topic, work.layer_acts(m.name), info["layers"], work.make_probe,
                                               work.dense_probe(m, topic), pruned=by_layer)
    del loaded
    gc.collect()
    metrics.update(clock.record())
    work.say("  " + ", ".join(f"{k} {v:.0f}s wall / {clock.cpu[k]:.0f}s CPU" for k, v in clock.wall.items()))
    doc = {"identity": identity, "identity_hash": S.identity_hash(identity), "label": method.label,
           "flags": list(method.flags), "setting": setting, "setting_tag": setting["nm"] or f"{setting['sparsity']:g}",
           "prune_seed": prune_seed, "achieved_sparsity": meta.get("overall_sparsity"), **metrics, "sets": values}
    if finetune is not None:
        doc["finetune"] = finetune
    out = work.out / "points"
    if reserved:
        S.write_tensors(out / f"{name}.reserved.safetensors", reserved, {"identity_hash": doc["identity_hash"]})
    S.write_json(out / f"{name}.json", doc)
    shutil.rmtree(ckpt, ignore_errors=True)
    if ckpt != pruned:
        shutil.rmtree(pruned, ignore_errors=True)
    return doc


def reserved_scores(work: Work, point: dict | None) -> dict:
    """``--final`` only: the reserved sets' item scores of the dense model (``point`` None) or of
    a finished point (from its stored activations), cached next to the point."""
    names = [s.name for s in work.sets if s.name in work.reserved]
    if point is None:
        out = {}
        for topic in work.topics:
            for m in topic.members:
                if m.name in names:
                    info = work.dense["sets"][m.name]
                    out[m.name] = P.dense_measures(P.item_scores(m, topic, work.layer_acts(m.name), info["layers"],
                                                                 work.make_probe, work.dense_probe(m, topic)))
        return out
    name = S.point_name(point["label"], point["setting"], point["prune_seed"])
    path = work.out / "points" / f"{name}.final.json"
    cached = S.load_matching(path, {"point": point["identity_hash"]})
    if cached is not None:
        return cached["sets"]
    x = S.read_tensors(work.out / "points" / f"{name}.reserved.safetensors") or {}
    out = {}
    for topic in work.topics:
        for m in topic.members:
            if m.name in names and m.name in x:
                info = work.dense["sets"][m.name]
                by_layer = {k: x[m.name][i] for i, k in enumerate(info["stored_layers"])}
                out[m.name] = P.item_scores(m, topic, work.layer_acts(m.name), info["layers"], work.make_probe,
                                            work.dense_probe(m, topic), pruned=by_layer)
    S.write_json(path, {"identity_hash": S.identity_hash({"point": point["identity_hash"]}), "sets": out})
    return out


__all__ = ["FORMAT", "Work", "dense_stage", "point_stage", "point_identity", "load_point", "reserved_scores"]

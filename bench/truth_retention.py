"""Truth-feature retention benchmark: methods x sparsities through one protocol, with error bars.

    flock /tmp/truthprune-heavy.lock python bench/truth_retention.py [--methods wanda,ours] \
        [--sparsity 0.5[,0.6]] [--nm 2:4] [--seeds 5] [--max-per-set 600] [--out runs/retention]

Each method is pruned by ``truthprune prune`` in a subprocess (the user's path; calibration per
docs/results.md, truth statements from the build topics only), then evaluated here on the saved
checkpoint: last-token activations of the scored statement sets, a ``logreg`` probe per layer on
entity-grouped splits for every split seed, accuracy over the dense model's top third of layers,
retention R = (pruned - 0.5)/(dense - 0.5) per set group, two-level bootstrap intervals and paired
differences against wanda and tplo; plus dense-probe transfer, perplexity and TruthfulQA MC1/MC2.
Scored topics never overlap the build topics (``truthprune.DEFAULT_BUILD_SETS``); the build topics
are reported apart as "seen". Results are written per point to --out and reused by a rerun
(resumable); see bench/README.md for the protocol.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retention import methods as M  # noqa: E402
from retention import protocol as P  # noqa: E402
from retention import report as R  # noqa: E402
from retention import store as S  # noqa: E402

FORMAT = 1
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", help=f"comma list of method labels (default: all of {', '.join(M.DEFAULT_METHODS)} and --method ones)")
    ap.add_argument("--method", action="append", default=[], metavar="LABEL=FLAGS",
                    help="add a method: 'label=--pruner X [--allocator Y] [--pruner-opt k=v ...]' (repeatable)")
    ap.add_argument("--sparsity", help="comma list of unstructured sparsities (default 0.5 unless only --nm is given)")
    ap.add_argument("--nm", help="comma list of N:M patterns, e.g. 2:4")
    ap.add_argument("--seeds", type=int, default=5, help="split seeds (>= 5 for reported numbers)")
    ap.add_argument("--max-per-set", type=int, default=600, help="statements per set (seeded class-balanced sample); 0 = all")
    ap.add_argument("--truth-data", default="../shared/data/truth_statements")
    ap.add_argument("--truthfulqa", default="../shared/data/truthfulqa/TruthfulQA.csv", help="TruthfulQA.csv, or 'none' to skip")
    ap.add_argument("--truthfulqa-limit", type=int, default=None, help="first N held-out questions only (quick runs)")
    ap.add_argument("--out", default="runs/retention")
    ap.add_argument("--work-dir", default=None, help="where pruned checkpoints live until evaluated (default OUT/work)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--calibration", default="wikitext2")
    ap.add_argument("--calibration-opt", action="append", default=None, metavar="K=V",
                    help="default: path=../shared/data/wikitext-2/valid.txt")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--prune-seed", type=int, default=0, help="seed of calibration sampling in truthprune prune")
    ap.add_argument("--ppl-data", default="../shared/data/wikitext-2/test.txt")
    ap.add_argument("--ppl-max-windows", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="statements per extraction batch")
    ap.add_argument("--top-fraction", type=float, default=1 / 3, help="share of layers (best dense) averaged")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates")
    ap.add_argument("--groups", default="default", help="'default' (truthprune.DEFAULT_SCORED_GROUPS) or "
                    "'g1=set_a+set_b;g2=set_c' for other unseen groups (checked against the build topics)")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the table/plot from finished points")
    return ap.parse_args(argv)


# ----------------------------------------------------------------------------- plan (cheap checks first)


def _settings(args) -> list[dict]:
    from truthprune import UserError

    out = []
    sparsities = args.sparsity if args.sparsity is not None else ("" if args.nm else "0.5")
    for item in filter(None, (x.strip() for x in sparsities.split(","))):
        try:
            s = float(item)
        except ValueError:
            raise UserError(f"--sparsity {item!r} is not a number; use e.g. --sparsity 0.5,0.6") from None
        if not 0.0 < s < 1.0:
            raise UserError(f"--sparsity {s} must lie strictly between 0 and 1")
        out.append({"sparsity": s, "nm": None})
    for item in filter(None, (x.strip() for x in (args.nm or "").split(","))):
        try:
            n, m = (int(v) for v in item.split(":"))
            assert 0 < n < m
        except (ValueError, AssertionError):
            raise UserError(f"--nm {item!r} must look like N:M with 0 < N < M, e.g. 2:4") from None
        out.append({"sparsity": n / m, "nm": item})
    if not out:
        raise UserError("no sparsity to run; pass --sparsity 0.5 and/or --nm 2:4")
    return out


def _groups(spec: str) -> dict[str, tuple[str, ...]]:
    from truthprune import DEFAULT_SCORED_GROUPS, UserError

    if spec == "default":
        return dict(DEFAULT_SCORED_GROUPS)
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, sets = part.partition("=")
        if not sep or not name.strip() or not sets.strip():
            raise UserError(f"--groups part {part!r} must look like 'group=set_a+set_b'")
        out[name.strip()] = tuple(s.strip() for s in sets.split("+") if s.strip())
    return out


def plan(args):
    from truthprune import DEFAULT_BUILD_SETS, DEFAULT_SEEN_GROUPS, UserError, shared_topics

    for flag, path in (("--truth-data", args.truth_data), ("--ppl-data", args.ppl_data)):
        if not Path(path).exists():
            raise UserError(f"{flag} {path!r} does not exist; pass the path to the shared data (see ../shared/data/README.md)")
    if args.truthfulqa != "none" and not Path(args.truthfulqa).is_file():
        raise UserError(f"--truthfulqa {args.truthfulqa!r} is not a file; pass TruthfulQA.csv or --truthfulqa none")
    if args.seeds < 2:
        raise UserError(f"--seeds {args.seeds}: the bootstrap over seeds needs at least 2 (5 for reported numbers)")
    if args.max_per_set < 0 or 0 < args.max_per_set < 40:
        raise UserError(f"--max-per-set {args.max_per_set} is too small for a held-out split; use 40 or more (0 = all)")
    if not 0 < args.top_fraction <= 1:
        raise UserError(f"--top-fraction {args.top_fraction} must lie in (0, 1]")
    unseen = _groups(args.groups)
    seen = dict(DEFAULT_SEEN_GROUPS)
    leak = shared_topics(DEFAULT_BUILD_SETS, [s for names in unseen.values() for s in names])
    if leak:
        raise UserError(f"scored groups share topics with the build sets: {leak}; score other topics")
    calib_opt = args.calibration_opt or ["path=../shared/data/wikitext-2/valid.txt"]
    common = ["--calibration", args.calibration, *[x for o in calib_opt for x in ("--calibration-opt", o)],
              "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--seed", str(args.prune_seed),
              "--truth-data", args.truth_data, "--truth-datasets", ",".join(DEFAULT_BUILD_SETS)]
    return unseen, seen, common, _settings(args), M.select_methods(args.methods, args.method)


# ----------------------------------------------------------------------------- evaluation of one model


def evaluate_model(loaded, args, sets, layers, fingerprint=None) -> tuple[dict, dict]:
    """(metrics, activations): perplexity, TruthfulQA and [layers, n, d] activations per set."""
    import truthprune

    metrics = {}
    t = time.perf_counter()
    ids = truthprune.load_eval_text(args.ppl_data, loaded.tokenizer)
    metrics["ppl"] = truthprune.perplexity(loaded.model, ids, args.seqlen, batch_size=8, max_windows=args.ppl_max_windows)
    say(f"  perplexity {metrics['ppl']['ppl']:.2f} ({time.perf_counter() - t:.0f}s)")
    if args.truthfulqa != "none":
        t = time.perf_counter()
        metrics["truthfulqa"] = truthprune.evaluate_truthfulqa(
            loaded.model, loaded.tokenizer, data=args.truthfulqa, limit=args.truthfulqa_limit, batch_size=8, seed=0)
        q = metrics["truthfulqa"]
        say(f"  TruthfulQA MC1 {q['mc1']:.3f} MC2 {q['mc2']:.3f} on {q['n_questions']} questions ({time.perf_counter() - t:.0f}s)")
    t = time.perf_counter()
    acts = {s.name: truthprune.extract_last_token(loaded.model, loaded.tokenizer, s.statements, layers=layers,
                                                  batch_size=args.batch_size, fingerprint=fingerprint) for s in sets}
    say(f"  activations of {sum(len(s) for s in sets)} statements ({time.perf_counter() - t:.0f}s)")
    return metrics, acts


def _make_probe():
    from truthprune.truth.probing.protocol import probe_factory

    return probe_factory("logreg", {})


def dense_stage(args, sets, topics, identity) -> tuple[dict, dict]:
    out = Path(args.out)
    dense = S.load_matching(out / "dense.json", identity)
    if dense is not None and (out / "dense_probes.pkl").is_file():
        probes = S.read_pickle(out / "dense_probes.pkl")
        if probes is not None and probes.get("identity_hash") == dense["identity_hash"]:
            say("dense: reusing dense.json")
            return dense, probes["probes"]
    import truthprune

    say(f"dense: loading {args.model}")
    loaded = truthprune.load_model(args.model, device=args.device)
    metrics, acts = evaluate_model(loaded, args, sets, None, fingerprint=loaded.fingerprint)
    t = time.perf_counter()
    result, probes = P.evaluate_dense(topics, acts, _make_probe(), args.seeds, args.top_fraction,
                                      on_set=lambda n: say(f"  probes on {n}, all layers x {args.seeds} seeds"))
    say(f"  dense probes done ({time.perf_counter() - t:.0f}s)")
    dense = {"identity": identity, "identity_hash": S.identity_hash(identity), "model": args.model, **metrics,
             "sets": result, "probe_seconds": time.perf_counter() - t}
    S.write_pickle(out / "dense_probes.pkl", {"identity_hash": dense["identity_hash"], "probes": probes})
    S.write_json(out / "dense.json", dense)
    del loaded
    gc.collect()
    return dense, probes


def point_stage(args, method, setting, common, sets, topics, dense, probes) -> dict | None:
    name = S.point_name(method.label, setting)
    out = Path(args.out)
    identity = {"format": FORMAT, "dense": dense["identity_hash"], "flags": list(method.flags), "setting": setting,
                "common": common, "model": args.model}
    if method.finetune is not None:  # a recovered point: its identity also holds the finetune command
        identity["finetune"] = [*finetune_common(args), *method.finetune]
    done = S.load_matching(out / "points" / f"{name}.json", identity)
    if done is not None:
        say(f"{name}: reusing points/{name}.json")
        return done
    work = Path(args.work_dir or out / "work") / name
    marker = work / "bench_identity.json"
    prune_s = None
    if S.load_matching(marker, identity) is not None:
        say(f"{name}: reusing the pruned checkpoint in {work}")
        prune_s = S.load_matching(marker, identity)["prune_seconds"]
    else:
        cmd = M.prune_command(method, args.model, setting, str(work), common)
        say(f"{name}: {' '.join(cmd[2:])}")
        work.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        prune_s = time.perf_counter() - t
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            say(f"WARNING {name}: truthprune prune exited {proc.returncode}, skipped: {' | '.join(tail)}")
            return None
        S.write_json(marker, {"identity_hash": S.identity_hash(identity), "prune_seconds": prune_s})
        say(f"{name}: pruned in {prune_s:.0f}s")
    import json

    import truthprune

    meta = json.loads((work / "truthprune.json").read_text())
    finetune = None
    if method.finetune is not None:
        work, finetune = finetune_point(args, method, name, work, identity)
        if work is None:
            return None
    loaded = truthprune.load_model(str(work), device=args.device)
    layers = sorted({k for info in dense["sets"].values() for k in info["top_layers"]})
    metrics, acts = evaluate_model(loaded, args, sets, layers)
    del loaded
    gc.collect()
    t = time.perf_counter()
    result = P.evaluate_pruned(topics, acts, layers, dense["sets"], probes, _make_probe(), args.seeds)
    say(f"  probes on {len(layers)} top layers x {args.seeds} seeds, + dense-probe transfer ({time.perf_counter() - t:.0f}s)")
    point = {"identity": identity, "identity_hash": S.identity_hash(identity), "label": method.label,
             "flags": list(method.flags), "setting": setting, "setting_tag": setting["nm"] or f"{setting['sparsity']:g}",
             "prune_seconds": prune_s, "achieved_sparsity": meta.get("overall_sparsity"), **metrics, "sets": result}
    if finetune is not None:
        point["finetune"] = finetune
    S.write_json(out / "points" / f"{name}.json", point)
    shutil.rmtree(work, ignore_errors=True)
    if finetune is not None:
        shutil.rmtree(Path(str(work)[: -len(".lora")]), ignore_errors=True)
    return point


def finetune_common(args) -> list[str]:
    """The training text and seed of every recovered point (the pruning calibration text, seed 0)."""
    calib_opt = args.calibration_opt or ["path=../shared/data/wikitext-2/valid.txt"]
    return ["--calibration", args.calibration, *[x for o in calib_opt for x in ("--calibration-opt", o)],
            "--seed", "0", "--device", args.device]


def finetune_point(args, method, name, work: Path, identity) -> tuple[Path | None, dict | None]:
    """LoRA-recover the pruned checkpoint ``work`` into ``work.lora`` (resumable like the prune); returns
    (the recovered checkpoint, what finetune recorded plus the sparsity check) or (None, None) on failure."""
    import json

    from truthprune.reporting.inspect_model import inspect_checkpoint

    done = Path(f"{work}.lora")
    marker = done / "bench_identity.json"
    if S.load_matching(marker, identity) is None:
        cmd = M.finetune_command(method, str(work), str(done), finetune_common(args))
        say(f"{name}: {' '.join(cmd[2:])}")
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            say(f"WARNING {name}: truthprune finetune exited {proc.returncode}, skipped: {' | '.join(tail)}")
            return None, None
        S.write_json(marker, {"identity_hash": S.identity_hash(identity), "finetune_seconds": time.perf_counter() - t})
        say(f"{name}: recovered in {time.perf_counter() - t:.0f}s")
    record = json.loads((done / "truthprune.json").read_text())["finetune"]
    before, after = inspect_checkpoint(work), inspect_checkpoint(done)
    record["sparsity_before"] = before["overall_sparsity"]
    record["sparsity_after"] = after["overall_sparsity"]
    record["inspect_warnings"] = after["warnings"]
    record["finetune_seconds"] = S.load_matching(marker, identity)["finetune_seconds"]
    return done, record


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    from truthprune import UserError

    try:
        unseen, seen, common, settings, methods = plan(args)
        scored = list(dict.fromkeys([s for g in (*unseen.values(), *seen.values()) for s in g]))
        sets = P.load_scored_sets(args.truth_data, scored, args.max_per_set or None)
        topics = P.topics_of(sets)
        plugins = M.installed_plugins()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runnable = []
    for method in methods:
        why = M.missing_plugin(method, plugins)
        if why:
            say(f"WARNING: skipping method {method.label}: {why} (pip install -e the plugin to include it)")
            continue
        for setting in settings:
            clash = M.nm_conflict(method, setting["nm"])
            if clash:
                say(f"WARNING: skipping {method.label} at {setting['nm']}: {clash}")
                continue
            runnable.append((method, setting))
    n_stmt = sum(len(s) for s in sets)
    say(f"{len(sets)} scored sets, {n_stmt} statements per model ("
        + ", ".join(f"{s.name} {len(s)}" for s in sets) + ")")
    say(f"{len(runnable)} points: " + ", ".join(S.point_name(m.label, s) for m, s in runnable))
    say(f"probe fits: dense {len(sets) * args.seeds} per layer (every layer), per point the same for the top "
        f"{args.top_fraction:.2f} of layers; SmolLM2 on 2 cores: see bench/README.md for measured times")
    identity = {"format": FORMAT, "model": args.model, "seeds": args.seeds, "max_per_set": args.max_per_set,
                "probe": "logreg", "test_fraction": P.TEST_FRACTION, "top_fraction": args.top_fraction,
                "sets": {s.name: s.content_hash for s in sets}, "ppl": [args.ppl_data, args.seqlen, args.ppl_max_windows],
                "truthfulqa": [args.truthfulqa, args.truthfulqa_limit]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.report_only:
            dense = S.load_matching(out / "dense.json", identity)
            if dense is None:
                raise UserError(f"{out}/dense.json is missing or from other settings; run without --report-only")
            probes = None
        else:
            dense, probes = dense_stage(args, sets, topics, identity)
        points, durations = [], []
        for i, (method, setting) in enumerate(runnable):
            t_point = time.perf_counter()
            if args.report_only:
                p = S.load_matching(out / "points" / f"{S.point_name(method.label, setting)}.json",
                                    {"format": FORMAT, "dense": dense["identity_hash"], "flags": list(method.flags),
                                     "setting": setting, "common": common, "model": args.model})
            else:
                p = point_stage(args, method, setting, common, sets, topics, dense, probes)
            if p is not None:
                points.append(p)
            if not args.report_only and time.perf_counter() - t_point > 60:  # computed, not reused
                durations.append(time.perf_counter() - t_point)
                left = len(runnable) - i - 1
                say(f"point took {durations[-1] / 60:.1f} min; about {left * sum(durations) / len(durations) / 60:.0f} min "
                    f"for the {left} left")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say(f"interrupted: finished points are kept in {out}; rerun the same command to resume")
        return 130
    write_report(args, dense, points, unseen, seen)
    return 0


def write_report(args, dense, points, unseen, seen) -> None:
    out = Path(args.out)
    if not points:
        say("no finished points to report")
        return
    say(f"bootstrap ({args.bootstrap} replicates) over {len(points)} points")
    summary = R.summarize_points(dense, points, unseen, seen, n_boot=args.bootstrap)
    header = (f"## Truth retention, {args.model}: {args.seeds} split seeds, <= {args.max_per_set or 'all'} statements per set, "
              f"logreg probe, top {args.top_fraction:.2f} of layers by dense accuracy, {args.bootstrap} bootstrap replicates\n\n"
              f"Command: `python bench/truth_retention.py {' '.join(sys.argv[1:])}`")
    md = R.markdown(summary, dense, list(unseen), list(seen), header)
    print(md)
    (out / "retention.md").write_text(md)
    S.write_json(out / "retention.json", {"command": sys.argv, "unseen_groups": unseen, "seen_groups": seen,
                                          "dense": {"ppl": dense.get("ppl"), "truthfulqa": dense.get("truthfulqa"),
                                                    "top_layers": {n: i["top_layers"] for n, i in dense["sets"].items()}},
                                          **summary})
    if R.plot(summary, dense, str(out / "retention.png")):
        say(f"wrote {out}/retention.md, retention.json, retention.png")


if __name__ == "__main__":
    sys.exit(main())

"""Truth-feature retention benchmark (v2): methods x settings x prune seeds, four measures, paired intervals.

    python bench/truth_retention.py --methods wanda,tplo,sparsegpt,ours --sparsity 0.5 --nm 2:4 \\
        --prune-seeds 3 [--model gemma3-270m] [--out runs/retention/smollm2-135m] [--final]

Every method is pruned by ``truthprune prune`` (the user's path) from each of K calibration draws
(prune seeds, shared by all methods), then scored on unseen statement families with four
measures: (a) a probe retrained on the pruned model, (b) the dense model's probe transferred,
(c) its threshold-free AUROC, (d) its accuracy after unsupervised re-centring. R, the accuracy
drop and paired differences against the references come with three-level bootstrap intervals
(prune seeds, split seeds, entity clusters) and the minimum detectable effect. The reserved
final-test family is scored only with ``--final``. Resumable: every finished unit is stored and
reused. Protocol, pre-registered rules and cost: bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retention import evaluate as E  # noqa: E402
from retention import methods as M  # noqa: E402
from retention import protocol as P  # noqa: E402
from retention import report as R  # noqa: E402
from retention import stats as ST  # noqa: E402
from retention import store as S  # noqa: E402

T0 = time.perf_counter()
DEFAULT_CAPS = {"numbers": 200, "element_symb": 300, "common_claim": 1500, "cities": 150, "sp_en_trans": 150, "counterfact": 600}


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", help=f"comma list of method labels (default: all of {', '.join(M.DEFAULT_METHODS)} and --method ones)")
    ap.add_argument("--method", action="append", default=[], metavar="LABEL=FLAGS",
                    help="add a method: 'label=--pruner X [--allocator Y] [--pruner-opt k=v ...]' (repeatable)")
    ap.add_argument("--references", default="wanda,tplo", help="methods every other is compared with (paired)")
    ap.add_argument("--sparsity", help="comma list of unstructured sparsities (default 0.5 unless only --nm is given)")
    ap.add_argument("--nm", help="comma list of N:M patterns, e.g. 2:4")
    ap.add_argument("--prune-seeds", type=int, default=3, help="calibration draws per method (the outer bootstrap level)")
    ap.add_argument("--only-prune-seeds", default=None, metavar="K[,K...]",
                    help="compute only these prune seeds (to share one grid between workers or lanes; the report "
                         "leaves out methods whose seeds are not all there yet)")
    ap.add_argument("--seeds", type=int, default=10, help="split seeds (>= 10 for reported numbers)")
    ap.add_argument("--max-per-set", type=int, default=0, help="default statement cap per topic (0 = all rows)")
    ap.add_argument("--cap", action="append", default=[], metavar="FAMILY=N",
                    help=f"statement cap per topic of a family (default {DEFAULT_CAPS}; N=0: all)")
    ap.add_argument("--sets", help="comma list of unseen scored sets (default: truthprune.DEFAULT_SCORED_GROUPS); families by topic")
    ap.add_argument("--seen-sets", help="comma list of build-topic sets reported apart (default: DEFAULT_SEEN_GROUPS; 'none')")
    ap.add_argument("--reserved-sets", default=",".join(P.RESERVED_SETS), help="the final-test sets ('none' to skip)")
    ap.add_argument("--final", action="store_true", help="also score the reserved final-test family (the confirmation run)")
    ap.add_argument("--truth-data", default="../shared/data/truth_statements")
    ap.add_argument("--truthfulqa", default="none", help="TruthfulQA.csv to also score MC1/MC2 (default: none)")
    ap.add_argument("--truthfulqa-limit", type=int, default=None, help="first N held-out questions only")
    ap.add_argument("--out", default=None, help="result store (default runs/retention/MODEL)")
    ap.add_argument("--work-dir", default=None, help="where pruned checkpoints live until scored (default OUT/work)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--calibration", default="wikitext2")
    ap.add_argument("--calibration-opt", action="append", default=None, metavar="K=V",
                    help="default: path=../shared/data/wikitext-2/valid.txt")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--ppl-data", default="../shared/data/wikitext-2/test.txt")
    ap.add_argument("--ppl-max-windows", type=int, default=16, help="perplexity windows (0: no perplexity)")
    ap.add_argument("--ppl-prune-seeds", type=int, default=1, help="perplexity (and TruthfulQA) of the first N prune "
                    "seeds only: not part of the retention statistics, and a third of Gemma's evaluation time")
    ap.add_argument("--batch-size", type=int, default=32, help="statements per extraction batch")
    ap.add_argument("--top-fraction", type=float, default=1 / 3, help="share of layers averaged (best on dense validation rows)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for this process and each prune (1: on a shared "
                    "machine two threads spin-wait; measured 6x more CPU per extracted statement)")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the tables from finished points")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = f"runs/retention/{Path(args.model).name}"
    return args


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


def _names(spec: str | None, default: dict) -> list[str]:
    if spec is None:
        return [s for names in default.values() for s in names]
    return [] if spec.strip() == "none" else [s.strip() for s in spec.split(",") if s.strip()]


def _families(names: list[str]) -> dict[str, tuple[str, ...]]:
    from truthprune import topic_of

    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(topic_of(n), []).append(n)
    return {f: tuple(v) for f, v in out.items()}


def _caps(args) -> dict[str, int | None]:
    from truthprune import UserError

    caps = {**DEFAULT_CAPS}
    for item in args.cap:
        fam, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise UserError(f"--cap {item!r} must look like FAMILY=N, e.g. --cap numbers=600")
        caps[fam.strip()] = int(n)
    default = args.max_per_set or None
    return {k: (v or None) for k, v in caps.items()} | {"*": default}


def only_prune_seeds(args) -> set[int] | None:
    """The prune seeds this invocation computes (None: all of them)."""
    from truthprune import UserError

    if args.only_prune_seeds is None:
        return None
    try:
        return {int(x) for x in args.only_prune_seeds.split(",") if x.strip()}
    except ValueError:
        raise UserError(f"--only-prune-seeds {args.only_prune_seeds!r} is not a comma list of integers, e.g. 1,2") from None


def plan(args):
    """(unseen families, seen families, reserved families, common prune flags, settings, methods):
    every check that needs no model, before any work."""
    from truthprune import DEFAULT_BUILD_SETS, DEFAULT_SCORED_GROUPS, DEFAULT_SEEN_GROUPS, UserError, shared_topics

    for flag, path in (("--truth-data", args.truth_data), ("--ppl-data", args.ppl_data)):
        if not Path(path).exists():
            raise UserError(f"{flag} {path!r} does not exist; pass the path to the shared data (see ../shared/data/README.md)")
    if args.truthfulqa != "none" and not Path(args.truthfulqa).is_file():
        raise UserError(f"--truthfulqa {args.truthfulqa!r} is not a file; pass TruthfulQA.csv or leave it out")
    if args.seeds < 2:
        raise UserError(f"--seeds {args.seeds}: the bootstrap over split seeds needs at least 2 (10 for reported numbers)")
    if args.prune_seeds < 1:
        raise UserError(f"--prune-seeds {args.prune_seeds} must be at least 1 (3 for reported numbers)")
    only = only_prune_seeds(args)
    if only is not None and not only <= set(range(args.prune_seeds)):
        raise UserError(f"--only-prune-seeds {args.only_prune_seeds}: each seed must lie in 0..{args.prune_seeds - 1} "
                        f"(--prune-seeds {args.prune_seeds})")
    if args.max_per_set < 0 or 0 < args.max_per_set < 40:
        raise UserError(f"--max-per-set {args.max_per_set} is too small for three splits; use 40 or more (0 = all)")
    if not 0 < args.top_fraction <= 1:
        raise UserError(f"--top-fraction {args.top_fraction} must lie in (0, 1]")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads} must be at least 1")
    if args.bootstrap < 100:
        raise UserError(f"--bootstrap {args.bootstrap} is too few replicates for a 95 % interval; use 1000 or more")
    unseen, seen = _families(_names(args.sets, DEFAULT_SCORED_GROUPS)), _families(_names(args.seen_sets, DEFAULT_SEEN_GROUPS))
    reserved = _families(_names(args.reserved_sets, {}))
    if not unseen:
        raise UserError("no scored sets; pass --sets or leave it out for the defaults")
    scored = [s for names in (*unseen.values(), *reserved.values()) for s in names]
    leak = shared_topics(DEFAULT_BUILD_SETS, scored)
    if leak:
        raise UserError(f"scored sets share topics with the build sets: {leak}; score other topics")
    overlap = (set(unseen) | set(seen)) & set(reserved)
    if overlap:
        raise UserError(f"family {sorted(overlap)} is both scored and reserved; reserve another family")
    calib_opt = args.calibration_opt or ["path=../shared/data/wikitext-2/valid.txt"]
    common = ["--calibration", args.calibration, *[x for o in calib_opt for x in ("--calibration-opt", o)],
              "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen),
              "--truth-data", args.truth_data, "--truth-datasets", ",".join(DEFAULT_BUILD_SETS),
              "--truth-max-per-set", "0"]  # the TPLO truth profile from every build statement, as measured before
    methods = M.select_methods(args.methods, args.method)
    refs = [r.strip() for r in args.references.split(",") if r.strip()]
    return unseen, seen, reserved, common, _settings(args), methods, refs


def load_work(args, unseen, seen, reserved) -> E.Work:
    from truthprune import build_topics, topic_of

    names = [s for fam in (unseen, seen, reserved) for names in fam.values() for s in names]
    caps = _caps(args)
    sets = P.load_sets(args.truth_data, names, {f: caps.get(f, caps["*"]) for f in {topic_of(n) for n in names}})
    topics = build_topics(sets)
    for t in topics:
        P.check_classes(t, args.seeds)
    reserved_names = {s for names in reserved.values() for s in names}
    return E.Work(args, sets, topics, reserved_names, P.family_clusters(topics), say)


def dense_identity(args, work: E.Work) -> dict:
    return {"format": E.FORMAT, "model": args.model, "seeds": args.seeds, "probe": "logreg",
            "fractions": [P.TEST_FRACTION, P.VAL_FRACTION], "top_fraction": args.top_fraction,
            "sets": {s.name: s.content_hash for s in work.sets}, "reserved": sorted(work.reserved),
            "ppl": [args.ppl_data, args.seqlen, args.ppl_max_windows], "truthfulqa": [args.truthfulqa, args.truthfulqa_limit]}


# ----------------------------------------------------------------------------- main


def set_threads(n: int) -> None:
    """One intra-op thread count for torch and the BLAS under numpy/scikit-learn."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


def runnable_points(methods, settings, plugins):
    out = []
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
            out.append((method, setting))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from truthprune import UserError

    try:
        unseen, seen, reserved, common, settings, methods, refs = plan(args)
        work = load_work(args, unseen, seen, reserved)
        plugins = M.installed_plugins()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    set_threads(args.threads)
    runnable = runnable_points(methods, settings, plugins)
    say(f"{len(work.sets)} sets, {sum(len(s) for s in work.sets)} statements per model: "
        + ", ".join(f"{s.name} {len(s)}" for s in work.sets))
    say(f"families: unseen {list(unseen)}, seen {list(seen)}, reserved {list(reserved)}")
    say(f"{len(runnable)} method x setting pairs x {args.prune_seeds} prune seeds = {len(runnable) * args.prune_seeds} points")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    identity = dense_identity(args, work)
    points, durations = [], []
    try:
        if args.report_only:
            work.dense = S.load_matching(out / "dense.json", identity)
            work.dense_acts = S.read_tensors(out / "dense_acts.safetensors") if args.final else None
            if work.dense is None:
                raise UserError(f"{out}/dense.json is missing or from other settings; run without --report-only")
        else:
            E.dense_stage(work, identity)
        only = only_prune_seeds(args)
        for setting in settings:
            for k in range(args.prune_seeds):
                read_only = args.report_only or (only is not None and k not in only)  # another worker's seed
                for method, s in runnable:
                    if s != setting:
                        continue
                    t = time.perf_counter()
                    if read_only:
                        name = S.point_name(method.label, setting, k)
                        p = E.load_point(work, name, E.point_identity(work, method, setting, k, common))
                    else:
                        p = E.point_stage(work, method, setting, k, common)
                    if p is not None:
                        points.append(p)
                    if not read_only and time.perf_counter() - t > 30:
                        durations.append(time.perf_counter() - t)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say(f"interrupted: finished points are kept in {out}; rerun the same command to resume")
        return 130
    if durations:
        say(f"{len(durations)} points computed, {sum(durations) / 60:.1f} min ({sum(durations) / len(durations):.0f}s each)")
    write_report(args, work, points, unseen, seen, reserved, refs, settings)
    return 0


def _models_table(dense: dict, points: list) -> dict:
    """Per method: perplexity (mean and per prune seed), achieved sparsity, mean prune and
    evaluation seconds (wall, and CPU of this process and the prune subprocess)."""
    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else float("nan")

    out = {}
    by: dict[str, list] = {}
    for p in points:
        by.setdefault(p["label"], []).append(p)
    for m, ps in by.items():
        ps = sorted(ps, key=lambda p: p["prune_seed"])
        ppl = [p["ppl"]["ppl"] for p in ps if p.get("ppl")]
        cpu = [p.get("cpu_seconds", {}) for p in ps]
        out[m] = {"ppl_value": mean(ppl) if ppl else None,
                  "ppl": f"{mean(ppl):.2f}" if ppl else "–", "ppl_seeds": ", ".join(f"{x:.2f}" for x in ppl) or "–",
                  "sparsity": f"{ps[0].get('achieved_sparsity') or float('nan'):.4f}",
                  "prune_s": f"{mean([p['seconds'].get('prune') for p in ps]):.0f} / {mean([c.get('prune') for c in cpu]):.0f}",
                  "eval_s": f"{mean([sum(v for k, v in p['seconds'].items() if k != 'prune') for p in ps]):.0f} / "
                            f"{mean([sum(v for k, v in c.items() if k != 'prune') for c in cpu]):.0f}"}
    dppl = (dense.get("ppl") or {}).get("ppl")
    dense_row = {"ppl_value": dppl, "ppl": f"{dppl:.2f}" if dppl else "–", "ppl_seeds": "–", "sparsity": "0", "prune_s": "–",
                 "eval_s": f"{sum((dense.get('seconds') or {}).values()):.0f} / {sum((dense.get('cpu_seconds') or {}).values()):.0f}"}
    return {"dense": dense_row} | out


def write_report(args, work, points, unseen, seen, reserved, refs, settings) -> None:
    import json

    out = Path(args.out)
    if not points:
        say("no finished points to report")
        return
    dense_sets = work.dense["sets"]
    seeds = list(range(args.prune_seeds))
    results, finals, models, md = {}, {}, {}, []
    header = (f"## Truth retention v2, {args.model}: {args.prune_seeds} prune seeds x {args.seeds} split seeds, "
              f"top {args.top_fraction:.2f} of layers chosen on dense validation rows, {args.bootstrap} bootstrap replicates\n\n"
              f"Command: `python bench/truth_retention.py {' '.join(sys.argv[1:])}`\n")
    md.append(header)
    for setting in settings:
        tag = setting["nm"] or f"{setting['sparsity']:g}"
        here = [p for p in points if p["setting"] == setting]
        methods, missing = R.complete_methods(here, seeds)
        if missing:
            say(f"{tag}: left out (not every prune seed finished): {', '.join(missing)}")
        if not methods:
            continue
        names = {m: {k: S.point_name(m, setting, k) for k in seeds} for m in methods}
        scores = {"dense": {n: i["values"] for n, i in dense_sets.items() if "values" in i}}
        scores |= {S.point_name(p["label"], setting, p["prune_seed"]): p["sets"] for p in here}
        scored = [n for fam in (*unseen.values(), *seen.values()) for n in fam]
        sets, design = R.build(dense_sets, scores, names, seeds, scored)
        design.references = [r for r in refs if r in methods]
        results[tag] = ST.analyse(sets, design, P.MEASURES, R.pool_unseen(design.references, list(unseen)),
                                  n_boot=args.bootstrap, seed=0)
        models[tag] = _models_table(work.dense, here)
        md.append(R.markdown(results[tag], tag, design.references, models[tag]))
        md += [line + "\n" for line in R.mde_lines(results[tag], design.references)]
        if args.final and reserved:
            rnames = [n for fam in reserved.values() for n in fam]
            rscores = {"dense": E.reserved_scores(work, None)}
            rscores |= {S.point_name(p["label"], setting, p["prune_seed"]): E.reserved_scores(work, p) for p in here}
            rsets, rdesign = R.build(dense_sets, rscores, names, seeds, rnames)
            rdesign.references = design.references
            finals[tag] = ST.analyse(rsets, rdesign, P.MEASURES, R.pool_unseen(rdesign.references, list(reserved)),
                                     n_boot=args.bootstrap, seed=0)
            md.append("\n## Reserved final-test family (confirmation run)\n\n" + R.markdown(finals[tag], tag, rdesign.references, models[tag]))
    text = "\n".join(md)
    print(text)
    (out / "retention.md").write_text(text)
    S.write_json(out / "retention.json", {"command": sys.argv, "unseen": unseen, "seen": seen, "reserved": reserved,
                                          "models": models, "results": results, "final": finals})
    if R.plot(results, models, str(out / "retention.png")):
        say(f"wrote {out}/retention.md, retention.json, retention.png")
    say("summary: " + json.dumps({t: {m: round(e["R"]["point"], 3) for m, e in r["transfer"]["pooled"]["methods"].items()}
                                  for t, r in results.items()}))


if __name__ == "__main__":
    sys.exit(main())

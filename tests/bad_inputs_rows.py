"""The table of the bad-input suite: one :class:`Case` per row (see bad_inputs_lib for the rules).

Placeholders in argv: ``{D}`` the shared inputs (bad_inputs_data.build), ``{C}`` the case's own
directory (also its working directory). Rows that end with ``--out {D}/run_good`` (or another
existing output) without ``--overwrite`` are *acceptance* rows: the input before it was accepted
when the refusal names the existing output instead.
"""

from __future__ import annotations

import json
import shutil

from bad_inputs_lib import Case

RUN = ("run --model {D}/tiny --calibration text --calibration-opt path={D}/calib.txt --nsamples 4 --seqlen 32 "
       "--batch-size 4 --eval ppl --ppl-data {D}/eval.txt --device cpu --quiet").split()
PRUNE = ("prune --model {D}/tiny --calibration text --calibration-opt path={D}/calib.txt --nsamples 4 --seqlen 32 "
         "--device cpu --quiet").split()
SWEEP = ["sweep", *RUN[1:], "--pruner", "magnitude", "--sparsity", "0.3,0.5"]
PROBE = "probe --model {D}/tiny --device cpu --truth-data {D}/truth/ok --generalization-repeats 0".split()
PPL = "eval ppl --model {D}/tiny --seqlen 32 --device cpu --data {D}/eval.txt".split()
TQA = "eval truthfulqa --model {D}/tiny --device cpu --data {D}/tqa/ok.csv --limit 1".split()
ALLOC = "allocate --allocator uniform --stats {D}/stats/ok.json --sparsity 0.5 --json".split()
OUT, SAVE, EXISTS = ["--out", "{C}/out"], ["--save", "{C}/save"], ["--out", "{D}/run_good"]
ALREADY = "already exists"


def _with(base: list[str], flag: str, value: str) -> list[str]:
    """``base`` with ``flag``'s value replaced (or appended)."""
    args = list(base)
    if flag in args:
        args[args.index(flag) + 1] = value
        return args
    return args + [flag, value]


def _copy_run(name: str = "r", edit=None):
    """setup: copy the finished run to {C}/name, optionally editing its report.json."""

    def setup(ctx):
        dst = ctx.case / name
        shutil.copytree(ctx.base / "run_good", dst)
        if edit is not None:
            f = dst / "report.json"
            if callable(edit):
                data = json.loads(f.read_text())
                edit(data)
                f.write_text(json.dumps(data))
            else:
                f.write_bytes(edit)

    return setup


def _set(path: str, value):
    def edit(data):
        keys = path.split(".")
        d = data
        for k in keys[:-1]:
            d = d[int(k)] if isinstance(d, list) else d[k]
        d[keys[-1]] = value

    return edit


def usage_rows() -> list[Case]:
    bad = {
        "run-sparsity-abc": [*RUN, "--sparsity", "abc", *OUT], "run-nsamples-abc": [*RUN, "--nsamples", "abc"],
        "run-unknown-option": [*RUN, "--bogus"], "prune-sparsity-abc": [*PRUNE, "--sparsity", "abc", *SAVE],
        "prune-unknown-option": [*PRUNE, "--frobnicate"], "sweep-unknown-option": [*SWEEP, "--bogus"],
        "probe-batch-size-0": [*PROBE, "--batch-size", "0"], "probe-repeats-0": [*PROBE, "--repeats", "0"],
        "probe-test-fraction-abc": [*PROBE, "--test-fraction", "abc"], "ppl-seqlen-abc": [*PPL, "--seqlen", "abc"],
        "ppl-unknown-option": [*PPL, "--bogus"], "tqa-limit-abc": [*TQA, "--limit", "abc"],
        "allocate-missing-allocator": ["allocate", "--stats", "{D}/stats/ok.json"],
        "allocate-sparsity-abc": [*ALLOC, "--sparsity", "abc"], "compare-no-args": ["compare"],
        "report-no-args": ["report"], "report-two-args": ["report", "a", "b"],
        "config-show-unknown-option": ["config", "show", "--bogus"], "plugins-unknown-option": ["plugins", "--bogus"],
        "unknown-command": ["frobnicate"], "eval-unknown-subcommand": ["eval", "nosuch"],
        "config-unknown-subcommand": ["config", "nosuch"], "run-flag-missing-value": [*RUN, "--out"],
    }
    return [Case(f"usage/{k}", v, msg=r"invalid value|no such option|missing|no such command|unexpected extra|requires an argument")
            for k, v in bad.items()]


def config_rows() -> list[Case]:
    rows = [
        Case("config/run-batch-size-0", [*RUN, "--batch-size", "0", *OUT], msg="batch_size"),
        Case("config/run-sparsity-1.5", [*RUN, "--sparsity", "1.5", *OUT], msg="sparsity"),
        Case("config/run-sparsity-negative", [*RUN, "--sparsity", "-0.1", *OUT], msg="sparsity"),
        Case("config/run-nm-3:2", [*RUN, "--nm", "3:2", *OUT], msg="nm"),
        Case("config/run-nsamples-0", [*RUN, "--nsamples", "0", *OUT], msg="nsamples"),
        Case("config/run-seqlen-4", [*RUN, "--seqlen", "4", *OUT], msg="seqlen"),
        Case("config/run-eval-bogus", [*RUN, "--eval", "bogus", *OUT], msg="unknown evaluation"),
        Case("config/run-dtype-fp8", [*RUN, "--dtype", "fp8", *OUT], msg="dtype"),
        Case("config/run-unknown-pruner", [*RUN, "--pruner", "wandaa", *OUT], msg="unknown pruner"),
        Case("config/run-calibration-opt-no-equals", [*RUN, "--calibration-opt", "path", *OUT], msg="key=value"),
        Case("config/prune-no-save", list(PRUNE), msg="needs --save"),
    ]
    tomls = {"latin1": "not UTF-8", "binary": "binary|not UTF-8", "nul": "binary", "invalid": "not valid TOML",
             "unknown": "unknown setting", "sparsity_str": "sparsity", "windows0": "ppl_max_windows", "probeopts": "probe_options",
             "options_list": "pruner_options", "adir": "is a directory", "missing": "does not exist",
             "calib5": "must be a table"}
    for name, msg in tomls.items():
        for cmd, base in (("run", [*RUN, *OUT]), ("config-show", ["config", "show"])):
            rows.append(Case(f"toml/{cmd}-{name}", [*base, "--config", f"{{D}}/toml/{name}.toml"], msg=msg))
    rows.append(Case("toml/config-show-utf16-accepted", ["config", "show", "--config", "{D}/toml/utf16.toml"],
                     code=0, msg='"sparsity": 0.4'))
    return rows


def env_rows() -> list[Case]:
    cmds = {"run": [*RUN, *OUT], "prune": [*PRUNE, *SAVE], "probe": list(PROBE), "eval-ppl": list(PPL),
            "sweep": [*SWEEP, "--out", "{C}/sw"]}
    envs = {"rank-abc": ({"RANK": "abc"}, "RANK"), "world-abc": ({"WORLD_SIZE": "abc"}, "WORLD_SIZE"),
            "world-2-no-torchrun": ({"WORLD_SIZE": "2", "MASTER_ADDR": None}, "torchrun"),
            "cache-is-file": ({"TRUTHPRUNE_CACHE": "{D}/afile"}, "TRUTHPRUNE_CACHE")}
    rows = [Case(f"env/{c}-{e}", argv, env=env, msg=msg) for c, argv in cmds.items() for e, (env, msg) in envs.items()]
    rows += [
        Case("env/run-rank-not-below-world", [*RUN, *OUT], env={"RANK": "2", "WORLD_SIZE": "2"}, msg="RANK"),
        Case("env/run-local-rank-x", [*RUN, *OUT], env={"LOCAL_RANK": "x"}, msg="LOCAL_RANK"),
        Case("env/run-world-0", [*RUN, *OUT], env={"WORLD_SIZE": "0"}, msg="WORLD_SIZE"),
        Case("env/run-cache-under-file", [*RUN, *OUT], env={"TRUTHPRUNE_CACHE": "{D}/afile/sub"}, msg="TRUTHPRUNE_CACHE"),
        Case("env/run-cache-empty", [*RUN, *OUT], env={"TRUTHPRUNE_CACHE": ""}, msg="TRUTHPRUNE_CACHE"),
        Case("env/run-xdg-cache-is-file", [*RUN, *OUT], env={"TRUTHPRUNE_CACHE": None, "XDG_CACHE_HOME": "{D}/afile"},
             msg="XDG_CACHE_HOME"),
        Case("config/run-seed-negative", [*RUN, *OUT, "--seed", "-1"], msg="--seed"),
        Case("config/run-seed-too-large", [*RUN, *OUT, "--seed", str(2**40)], msg="--seed"),
        Case("config/probe-seed-too-large", [*PROBE, "--seed", str(2**40)], msg="--seed"),
    ]
    return rows


MODELS = {
    "m_bert": "encoder", "m_distilbert": "encoder", "m_t5": "encoder-decoder", "m_nohead": "not a causal language model",
    "m_notype": "model_type", "m_cfglist": "not a JSON object", "m_cfgjson": "not valid JSON", "m_cfgbin": "binary|UTF-8",
    "m_nocfg": "no config.json", "m_noweights": "no weights", "m_random": "not a valid safetensors",
    "m_trunc": "truncated|not a valid safetensors", "m_empty": "not a valid safetensors", "m_hdrhuge": "not a valid safetensors",
    "m_hdrjson": "not a valid safetensors", "m_offsets": "truncated", "m_idxjson": "not valid JSON",
    "m_idxnomap": "weight_map", "m_idxmissing": "not a file beside it", "m_idxdotdot": "not a file beside it",
    "m_binonly": "pickle", "g_trunc.gguf": "truncated", "g_header.gguf": "corrupt or truncated",
    "g_random.gguf": "corrupt or truncated", "g_text.gguf": "not a GGUF", "g_empty.gguf": "not a GGUF",
    "g_magic.gguf": "corrupt or truncated", "g_notensors.gguf": "truncated", "missing.gguf": "does not exist",
    "afile": "not a .gguf", "nope/model": "does not exist", "m_sizestr": "num_hidden_layers",
    "m_tokjson": "not valid JSON", "m_genjson": "not valid JSON",
}
# refused as they loaded until the plan-time check compared the tensors with the config
LOAD_TIME_MODELS = {"m_wrongnames": "decoder layers 1, 2", "m_wrongshape": "has shape \\[5, 5\\]"}


def model_rows() -> list[Case]:
    rows = [Case(f"model/ppl-{m}", _with(PPL, "--model", f"{{D}}/{m}"), msg=msg) for m, msg in MODELS.items()]
    some = ("m_bert", "m_random", "m_trunc", "m_idxjson", "g_trunc.gguf", "m_binonly", "m_nohead")
    for m in some:
        msg = MODELS[m]
        rows += [
            Case(f"model/run-{m}", _with([*RUN, *OUT], "--model", f"{{D}}/{m}"), msg=msg),
            Case(f"model/prune-{m}", _with([*PRUNE, *SAVE], "--model", f"{{D}}/{m}"), msg=msg),
            Case(f"model/prune-offload-{m}", _with([*PRUNE, *SAVE, "--offload"], "--model", f"{{D}}/{m}"), msg=msg),
            Case(f"model/probe-{m}", _with(PROBE, "--model", f"{{D}}/{m}"), msg=msg),
            Case(f"model/tqa-{m}", _with(TQA, "--model", f"{{D}}/{m}"), msg=msg),
        ]
    rows += [Case(f"model/ppl-{m}", _with(PPL, "--model", f"{{D}}/{m}"), msg=msg) for m, msg in LOAD_TIME_MODELS.items()]
    rows += [Case(f"model/run-{m}", _with([*RUN, *OUT], "--model", f"{{D}}/{m}"), msg=msg, absent=["out"])
             for m, msg in LOAD_TIME_MODELS.items()]
    rows += [
        Case("model/run-seqlen-over-context", [*_with(RUN, "--seqlen", "512"), *OUT], msg="longer than the model's context"),
        Case("model/ppl-seqlen-over-context", _with(PPL, "--seqlen", "512"), msg="longer than the model's context"),
        Case("model/run-device-tpu", [*RUN, *OUT, "--device", "tpu"], msg="--device"),
        Case("model/ppl-device-tpu", _with(PPL, "--device", "tpu"), msg="--device"),
        Case("model/probe-device-tpu", _with(PROBE, "--device", "tpu"), msg="--device"),
    ]
    offline = {"HF_HUB_OFFLINE": "1"}
    unreachable = {"HF_HUB_OFFLINE": None, "TRANSFORMERS_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"}
    rows += [
        Case("model/ppl-hub-offline", _with(PPL, "--model", "someorg/no-such-model"), env=offline, msg="not in the local cache"),
        Case("model/run-hub-offline", _with([*RUN, *OUT], "--model", "someorg/no-such-model"), env=offline, msg="local cache"),
        Case("model/probe-hub-offline", _with(PROBE, "--model", "someorg/no-such-model"), env=offline, msg="local cache"),
        Case("model/ppl-hub-unreachable", _with(PPL, "--model", "someorg/no-such-model"), env=unreachable, msg="cannot be reached",
             plan_time=False),  # no network is needed to plan; the one connection attempt comes right before the load
        Case("model/prune-hub-unreachable", _with([*PRUNE, *SAVE], "--model", "someorg/no-such-model"), env=unreachable,
             msg="cannot be reached", plan_time=False),
        Case("model/ppl-not-a-hub-id", _with(PPL, "--model", "a/b/c"), msg="does not exist"),
        Case("model/ppl-empty", _with(PPL, "--model", ""), msg="empty"),
        Case("model/ppl-binonly-allow-pickle-accepted", [*_with(PPL, "--model", "{D}/m_binonly"), "--allow-pickle"],
             code=0, msg="perplexity", plan_time=False),
        Case("model/run-binonly-allow-pickle-accepted", [*_with(RUN, "--model", "{D}/m_binonly"), "--allow-pickle", *EXISTS],
             msg=ALREADY),
    ]
    return rows


TEXTS = {
    "t/latin1.txt": "not UTF-8", "t/binary.txt": "binary|not UTF-8", "t/nul.txt": "binary", "t/empty.txt": "empty",
    "t/blank.txt": "empty", "t/hi.txt": "distinct word", "t/hihi.txt": "distinct word", "t/null.jsonl": "null, not a string",
    "t/num.jsonl": "int, not a string", "t/list.jsonl": "list, not a string", "t/nofield.jsonl": "no 'text' field",
    "t/badline.jsonl": "not valid JSON", "t/array.jsonl": "no 'text' field", "t/latin1.jsonl": "not UTF-8",
    "t/garbage.parquet": "not a readable parquet", "t/empty.parquet": "not a readable parquet",
    "t/magic.parquet": "not a readable parquet", "t/nocol.parquet": "no column", "t/intcol.parquet": "not text",
    "t/missing.txt": "does not exist", "t": "is a directory",
}
ACCEPTED_TEXTS = {"t/utf16.txt": None, "t/bom8.txt": None, "t/good.jsonl": None, "t/good.parquet": None,
                  "t/nulls.parquet": "null record", "t/few.txt": "distinct words"}


def text_rows() -> list[Case]:
    def calib(path: str, base: list[str]) -> list[str]:
        return _with(base, "--calibration-opt", f"path={{D}}/{path}")

    rows = [Case(f"calib/run-{p}", calib(p, [*RUN, *OUT]), msg=msg) for p, msg in TEXTS.items()]
    rows += [Case(f"calib/run-accepted-{p}", calib(p, [*RUN, *EXISTS]), msg=ALREADY, warn=w) for p, w in ACCEPTED_TEXTS.items()]
    rows += [Case(f"calib/prune-{p}", calib(p, [*PRUNE, *SAVE]), msg=TEXTS[p]) for p in ("t/latin1.txt", "t/nul.txt", "t/null.jsonl")]
    rows += [Case(f"calib/sweep-{p}", calib(p, [*SWEEP, "--out", "{C}/sw"]), msg=TEXTS[p]) for p in ("t/binary.txt", "t/hi.txt")]
    sources = {("c4", "t/null.jsonl"): "null, not a string", ("c4", "t/latin1.jsonl"): "not UTF-8",
               ("c4", "t/binary.txt"): "binary|not UTF-8", ("wikitext2", "t/latin1.txt"): "not UTF-8",
               ("wikitext2", "t/nul.txt"): "binary", ("truth-statements", "truth/latin1"): "not UTF-8",
               ("truth-statements", "truth/inf"): "'inf' is not 0 or 1", ("enriched-truthfulqa", "tqa/latin1.csv"): "not UTF-8",
               ("enriched-truthfulqa", "tqa/nul.csv"): "binary"}
    rows += [Case(f"calib/run-{src}-{p}", calib(p, _with([*RUN, *OUT], "--calibration", src)), msg=msg)
             for (src, p), msg in sources.items()]
    evals = {"t/latin1.txt": "not UTF-8", "t/binary.txt": "binary|not UTF-8", "t/nul.txt": "binary", "t/empty.txt": "empty",
             "t/blank.txt": "empty", "t/missing.txt": "neither", "t": "neither"}
    rows += [Case(f"evaltext/ppl-{p}", _with(PPL, "--data", f"{{D}}/{p}"), msg=msg) for p, msg in evals.items()]
    rows += [Case(f"evaltext/run-{p}", _with([*RUN, *OUT], "--ppl-data", f"{{D}}/{p}"), msg=evals[p])
             for p in ("t/latin1.txt", "t/nul.txt", "t/empty.txt")]
    rows.append(Case("evaltext/ppl-utf16-accepted", _with(PPL, "--data", "{D}/t/utf16.txt"), code=0, msg="perplexity",
                     plan_time=False))
    return rows


TRUTH = {
    "latin1": "not UTF-8", "binary": "binary|not UTF-8", "nul": "binary", "inf": "'inf' is not 0 or 1",
    "nan": "'nan' is not 0 or 1", "two": "is not 0 or 1", "yes": "'yes' is not 0 or 1", "nocols": "missing column",
    "header": "no statements", "oneclass": "every statement is true", "conflict": "both true and false",
    "empty": "missing column", "quote": "is not 0 or 1|not readable as CSV|no statements",
}


def truth_rows() -> list[Case]:
    rows = [Case(f"truth/probe-{n}", [*_with(PROBE, "--truth-data", f"{{D}}/truth/{n}"), "--datasets", "facts"], msg=m)
            for n, m in TRUTH.items()]
    run_probe = _with([*RUN, *OUT], "--eval", "probe")
    rows += [Case(f"truth/run-{n}", [*run_probe, "--truth-data", f"{{D}}/truth/{n}"], msg=TRUTH[n])
             for n in ("latin1", "inf", "conflict", "nul")]
    rows += [
        Case("truth/probe-dir-without-csv", _with(PROBE, "--truth-data", "{D}/truth/nocsv"), msg="no .csv statement files"),
        Case("truth/run-dir-without-csv", [*run_probe, "--truth-data", "{D}/truth/nocsv"], msg="no .csv statement files"),
        Case("truth/probe-missing-dir", _with(PROBE, "--truth-data", "{D}/truth/missing"), msg="does not exist"),
        Case("truth/run-missing-dir", [*run_probe, "--truth-data", "{D}/truth/missing"], msg="not a directory"),
        Case("truth/probe-missing-set", [*PROBE, "--datasets", "nosuch"], msg="no statement file"),
        Case("truth/probe-huge-field-accepted", [*_with(PROBE, "--truth-data", "{D}/truth/huge"), "--datasets", "facts",
                                                 "--out", "{D}/afile"], msg=ALREADY),
        Case("truth/probe-misaligned-pair-skipped", [*_with(PROBE, "--truth-data", "{D}/truth/misaligned"),
                                                     "--out", "{D}/afile"], msg=ALREADY, warn="skipping facts_de and neg_facts_de"),
        Case("truth/probe-misaligned-named-sets", [*_with(PROBE, "--truth-data", "{D}/truth/misaligned"), "--datasets",
                                                   "cities,neg_cities,facts_de,neg_facts_de", "--out", "{D}/afile"],
             msg=ALREADY, warn="50 vs 49 rows"),
        Case("truth/probe-misaligned-strict", [*_with(PROBE, "--truth-data", "{D}/truth/misaligned"), "--strict"],
             msg="row-aligned"),
        Case("truth/probe-misaligned-strict-env", _with(PROBE, "--truth-data", "{D}/truth/misaligned"),
             env={"TRUTHPRUNE_STRICT": "1"}, msg="row-aligned"),
        Case("truth/probe-only-misaligned", _with(PROBE, "--truth-data", "{D}/truth/onlybad"), msg="every statement set"),
        Case("truth/run-misaligned-pair-skipped", [*_with([*RUN, *EXISTS], "--eval", "probe"), "--truth-data",
                                                   "{D}/truth/misaligned"], msg=ALREADY, warn="skipping facts_de"),
        Case("truth/run-misaligned-strict", [*run_probe, "--truth-data", "{D}/truth/misaligned"],
             env={"TRUTHPRUNE_STRICT": "1"}, msg="row-aligned"),
    ]
    return rows


def tqa_rows() -> list[Case]:
    bad = {"latin1": "not UTF-8", "binary": "binary|not UTF-8", "nul": "binary", "empty": "missing column",
           "header": "no usable questions", "nocols": "missing column", "noincorrect": "no usable questions",
           "missing": "does not exist"}
    rows = [Case(f"tqa/eval-{n}", _with(TQA, "--data", f"{{D}}/tqa/{n}.csv"), msg=m) for n, m in bad.items()]
    run_tqa = _with([*RUN, *OUT], "--eval", "truthfulqa")
    rows += [Case(f"tqa/run-{n}", [*run_tqa, "--truthfulqa-data", f"{{D}}/tqa/{n}.csv"], msg=bad[n])
             for n in ("latin1", "nocols", "missing")]
    rows += [
        Case("tqa/eval-limit-0", [*TQA, "--limit", "0"], msg="at least 1"),
        Case("tqa/eval-huge-field-accepted", _with(TQA, "--data", "{D}/tqa/huge.csv"), code=0, msg="MC1", plan_time=False),
    ]
    return rows

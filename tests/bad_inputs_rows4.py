"""Fourth part of the bad-input table: results that used to be silently wrong, tracebacks,
hangs and messages (inputs from bad_inputs_data3; conventions in bad_inputs_rows)."""

from __future__ import annotations

import json
import shutil

from bad_inputs_data3 import DEEP, HUGE_INT
from bad_inputs_lib import Case
from bad_inputs_rows import ALLOC, EXISTS, OUT, PPL, PROBE, PRUNE, RUN, SAVE, SWEEP, TQA, _copy_run, _with
from bad_inputs_rows3 import _fifo, _kept, _socket

ALREADY = "already exists"
BAD_UTF8 = "{C}/caf\udce9"  # the bytes b"caf\xe9" (Latin-1) as Python passes them on
LONG = "x" * 100_000
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": "{C}/hf", "HF_DATASETS_CACHE": "{C}/hf/datasets"}


def _no_calibration_file(args: list[str]) -> list[str]:
    return [a for i, a in enumerate(args) if a != "--calibration-opt" and (i == 0 or args[i - 1] != "--calibration-opt")]


RUN_NO_CALIB, PRUNE_NO_CALIB = _no_calibration_file(RUN), _no_calibration_file(PRUNE)

PLAN_MODELS = {  # refused by the plan-time format check (headers, config.json, tensors against the config)
    "m_hdr_shape": "spans 16 bytes", "m_hdr_dtype": "unknown dtype", "m_hdr_gap": "starts at byte 16, not 8",
    "m_hdr_overlap": "starts at byte 8, not 16", "m_hdr_trailing": "bytes after its last tensor",
    "m_hdr_negshape": "no valid shape", "m_hdr_shapestr": "no valid shape", "m_hdr_entrylist": "is not an object",
    "m_hdr_deep": "nested too deeply", "m_heads": "not divisible by num_attention_heads",
    "m_kvheads": "not divisible by num_key_value_heads", "m_act": "not an activation", "m_rope": "not a rope type",
    "m_layers1": "num_hidden_layers = 1,", "m_layersmillion": "num_hidden_layers = 1000000",
    "m_untied_nohead": "lacks 1 weight tensor.*lm_head", "m_int8": "stored as I8", "m_bool": "stored as BOOL",
    "m_extra": "no place for.*extra_proj", "m_notok": "no tokenizer", "m_tokempty": "not valid JSON|empty",
    "g_notok.gguf": "incomplete GGUF", "g_small.gguf": "incomplete GGUF",
}
LOAD_MODELS = {  # refused as the model loads, still before any work
    "m_nan": "NaN or Inf", "m_inf": "NaN or Inf", "m_tokobject": "tokenizer .* does not load",
    "m_tokbig": "token ids up to 97, but the model's embedding has 64 rows",
}


def _m(base: list[str], model: str) -> list[str]:
    return _with(base, "--model", f"{{D}}/{model}")


def model_rows() -> list[Case]:
    rows = [Case(f"model3/ppl-{m}", _m(PPL, m), msg=msg) for m, msg in PLAN_MODELS.items()]
    for m in ("m_layers1", "m_layersmillion", "m_untied_nohead", "m_int8", "m_hdr_shape", "m_heads", "m_extra"):
        msg = PLAN_MODELS[m]
        rows += [
            Case(f"model3/run-{m}", _m([*RUN, *OUT], m), msg=msg),
            Case(f"model3/prune-offload-{m}", _m([*PRUNE, *SAVE, "--offload"], m), msg=msg),
            Case(f"model3/probe-{m}", _m(PROBE, m), msg=msg),
        ]
    rows += [Case(f"model3/ppl-{m}", _m(PPL, m), msg=msg, plan_time=False) for m, msg in LOAD_MODELS.items()]
    rows += [
        Case("model3/run-m_nan", _m([*RUN, *OUT], "m_nan"), msg="NaN or Inf", plan_time=False, absent=["out"]),
        Case("model3/prune-m_nan", _m([*PRUNE, *SAVE], "m_nan"), msg="NaN or Inf", plan_time=False, absent=["save"]),
        Case("model3/prune-offload-m_inf", _m([*PRUNE, *SAVE, "--offload"], "m_inf"), msg="NaN or Inf", plan_time=False,
             absent=["save"]),
        Case("model3/ppl-pickle-renamed-no-load-report", [*_m(PPL, "m_binrenamed"), "--allow-pickle"], plan_time=False,
             msg="lacks or mismatches|no place for", no="LOAD REPORT|UNEXPECTED|MISSING"),
        Case("model3/probe-chat-template-broken", [*_m(PROBE, "m_chatbroken"), "--chat-template"], plan_time=False,
             msg="chat template fails"),
        Case("model3/probe-chat-template-raises", [*_m(PROBE, "m_chatraise"), "--chat-template"], plan_time=False,
             msg="chat template fails.*refuses every conversation"),
        Case("model3/run-chat-template-raises", [*_m([*RUN, *OUT], "m_chatraise"), "--eval", "probe", "--chat-template"],
             plan_time=False, msg="chat template fails", absent=["out"]),
        Case("model3/run-quiet-no-bars", [*RUN, "--out", "{C}/o"], code=0, plan_time=False, msg="full report: ",
             no="Loading weights|LOAD REPORT"),
    ]
    return rows


def _fifo_model(part: str):
    def setup(ctx):
        shutil.copytree(ctx.base / "tiny", ctx.case / "m")
        (ctx.case / "m" / part).unlink()
        _fifo(f"m/{part}")(ctx)

    return setup


def _fifo_in(rel_dir: str, src: str, name: str):
    """setup: copy {D}/SRC to {C}/REL_DIR and put a FIFO named NAME in it (replacing a file)."""

    def setup(ctx):
        shutil.copytree(ctx.base / src, ctx.case / rel_dir)
        (ctx.case / rel_dir / name).unlink(missing_ok=True)
        _fifo(f"{rel_dir}/{name}")(ctx)

    return setup


def _link_to_fifo(src: str, rel_dir: str, name: str):
    """setup: copy {D}/SRC to {C}/REL_DIR with NAME a symbolic link to the FIFO {C}/p."""

    def setup(ctx):
        shutil.copytree(ctx.base / src, ctx.case / rel_dir)
        (ctx.case / rel_dir / name).unlink()
        _fifo("p")(ctx)
        (ctx.case / rel_dir / name).symlink_to(ctx.case / "p")

    return setup


def fifo_rows() -> list[Case]:
    """A FIFO where a file is read blocked forever; now one line saying it is a FIFO."""
    f = "FIFO"
    m = ["--model", "{C}/m"]
    rows = [
        Case("fifo/ppl-weights", _with(PPL, "--model", "{C}/m"), setup=_fifo_model("model.safetensors"), msg=f,
             post=_kept("m/model.safetensors")),
        Case("fifo/run-weights", [*_with(RUN, "--model", "{C}/m"), *OUT], setup=_fifo_model("model.safetensors"), msg=f,
             post=_kept("m/model.safetensors")),
        Case("fifo/prune-offload-weights", [*_with(PRUNE, "--model", "{C}/m"), *SAVE, "--offload"],
             setup=_fifo_model("model.safetensors"), msg=f, post=_kept("m/model.safetensors")),
        Case("fifo/probe-weights", _with(PROBE, "--model", "{C}/m"), setup=_fifo_model("model.safetensors"), msg=f,
             post=_kept("m/model.safetensors")),
        Case("fifo/ppl-config", _with(PPL, *m), setup=_fifo_model("config.json"), msg=f, post=_kept("m/config.json")),
        Case("fifo/ppl-tokenizer", _with(PPL, *m), setup=_fifo_model("tokenizer.json"), msg=f, post=_kept("m/tokenizer.json")),
        Case("fifo/ppl-gguf", _with(PPL, "--model", "{C}/f.gguf"), setup=_fifo("f.gguf"), msg=f, post=_kept("f.gguf")),
        Case("fifo/run-calibration", [*_with(RUN, "--calibration-opt", "path={C}/f"), *OUT], setup=_fifo("f"), msg=f,
             post=_kept("f")),
        Case("fifo/run-config", [*RUN, *OUT, "--config", "{C}/f"], setup=_fifo("f"), msg=f, post=_kept("f")),
        Case("fifo/config-show", ["config", "show", "--config", "{C}/f"], setup=_fifo("f"), msg=f, post=_kept("f")),
        Case("fifo/probe-truth-csv", [*_with(PROBE, "--truth-data", "{C}/td"), "--datasets", "facts"],
             setup=_fifo_in("td", "truth/ok", "facts.csv"), msg=f, post=_kept("td/facts.csv")),
        Case("fifo/allocate-stats", ["allocate", "--allocator", "owl", "--stats", "{C}/f"], setup=_fifo("f"), msg=f,
             post=_kept("f")),
        Case("fifo/report-json", ["report", "{C}/r"], setup=_fifo_in("r", "run_good", "report.json"), msg=f,
             post=_kept("r/report.json")),
        Case("fifo/compare-report-json", ["compare", "{C}/r", "{D}/run_good"], setup=_fifo_in("r", "run_good", "report.json"),
             msg=f, post=_kept("r/report.json")),
        Case("fifo/ppl-eval-text", _with(PPL, "--data", "{C}/f"), setup=_fifo("f"), msg=f, post=_kept("f")),
        Case("fifo/tqa-csv", _with(TQA, "--data", "{C}/f.csv"), setup=_fifo("f.csv"), msg=f, post=_kept("f.csv")),
        Case("fifo/run-ppl-data", [*_with(RUN, "--ppl-data", "{C}/f"), *OUT], setup=_fifo("f"), msg=f, post=_kept("f")),
        Case("fifo/run-out-under-fifo", [*RUN, "--out", "{C}/f/sub"], setup=_fifo("f"), msg=f"{f}.*nothing can be created",
             post=_kept("f")),
        Case("fifo/prune-activations-dir", [*PRUNE, *SAVE, "--activations-dir", "{C}/f"], setup=_fifo("f"), msg=f,
             post=_kept("f")),
        Case("fifo/report-json-link-to-fifo", ["report", "{C}/r"], setup=_link_to_fifo("run_good", "r", "report.json"), msg=f,
             post=_kept("p")),
        Case("fifo/ppl-weights-link-to-fifo", _with(PPL, "--model", "{C}/m"),
             setup=_link_to_fifo("tiny", "m", "model.safetensors"), msg=f, post=_kept("p")),
        Case("fifo/run-calibration-socket", [*_with(RUN, "--calibration-opt", "path={C}/s"), *OUT],
             setup=_socket("s"), msg="socket"),
    ]
    return rows


def config_rows() -> list[Case]:
    """Strict types: a value of the wrong type in a config file is refused, never converted."""
    tomls = {"sparsity_str": "sparsity", "nsamples_str": "nsamples", "overwrite_yes": "overwrite", "nsamples_bool": "nsamples",
             "calib_empty": "calibration", "model_empty": "model", "seed_float": "seed", "eval_str": "eval",
             "bigint": "number|cannot be read|Exceeds", "deep": "cannot be read|nested", "model_blank": "model",
             "batch_float": "batch_size", "quiet_int": "quiet"}
    rows = []
    flagged = {"nsamples_str", "nsamples_bool", "calib_empty", "model_empty", "eval_str", "model_blank", "batch_float",
               "quiet_int"}  # RUN gives these settings as flags, which beat the file: config show alone reads them
    for name, msg in tomls.items():
        if name not in flagged:
            rows.append(Case(f"toml3/run-{name}", [*RUN, *OUT, "--config", f"{{D}}/toml3/{name}.toml"], msg=msg))
        rows.append(Case(f"toml3/config-show-{name}", ["config", "show", "--config", f"{{D}}/toml3/{name}.toml"], msg=msg))
    rows += [
        Case("config3/run-calibration-empty", [*_with(RUN, "--calibration", ""), *OUT], msg="calibration"),
        Case("config3/run-calibration-commas", [*_with(RUN, "--calibration", ",,"), *OUT], msg="calibration"),
        Case("config3/config-show-model-empty", ["config", "show", "--model", ""], msg="model"),
        Case("config3/run-pruner-opt-deep", [*RUN, *OUT, "--pruner-opt", f"alpha={DEEP}"], msg="nested too deeply"),
        Case("config3/run-pruner-opt-bigint", [*RUN, *OUT, "--pruner-opt", f"alpha={HUGE_INT}"], msg="number too long"),
        Case("config3/allocate-option-deep", [*ALLOC, "--option", f"m={DEEP}"], msg="nested too deeply"),
        Case("config3/run-owl-flag-bigint", [*RUN, *OUT, "--pruner", "owl", "--owl-m", HUGE_INT], msg="number too long"),
        Case("config3/run-nsamples-huge", [*_with(RUN, "--nsamples", "100000000"), *OUT], msg="lower --nsamples"),
        Case("config3/prune-nsamples-huge", [*_with(PRUNE, "--nsamples", "100000000"), *SAVE], msg="lower --nsamples"),
        Case("config3/sweep-nsamples-huge", [*_with(SWEEP, "--nsamples", "100000000"), "--out", "{C}/sw"],
             msg="lower --nsamples"),
    ]
    return rows


def text_rows() -> list[Case]:
    """JSON nested too deeply or holding 5,000-digit numbers; CSV labels that only look like 0/1."""
    truth = {"almost1": "'0.99999999999999999' is not 0 or 1", "almost0": "is not 0 or 1", "sci": "'1e0' is not 0 or 1",
             "duplabel": "2 columns named 'label'", "dupstatement": "2 columns named 'statement'",
             "hexlabel": "'0x1' is not 0 or 1"}
    rows = [Case(f"truth3/probe-{n}", [*_with(PROBE, "--truth-data", f"{{D}}/truth3/{n}"), "--datasets", "facts"], msg=m)
            for n, m in truth.items()]
    rows += [Case(f"truth3/run-{n}", [*_with([*RUN, *OUT], "--eval", "probe"), "--truth-data", f"{{D}}/truth3/{n}"],
                  msg=truth[n]) for n in ("almost1", "duplabel")]
    rows += [
        Case("json3/run-jsonl-deep", [*_with(RUN, "--calibration-opt", "path={D}/t3/deep.jsonl"), *OUT], msg="nested too deeply"),
        Case("json3/run-jsonl-bigint", [*_with(RUN, "--calibration-opt", "path={D}/t3/bigint.jsonl"), *OUT],
             msg="number too long"),
        Case("json3/run-jsonl-deep-text", [*_with(RUN, "--calibration-opt", "path={D}/t3/deeptext.jsonl"), *OUT],
             msg="nested too deeply"),
        Case("json3/run-c4-local-deep", [*_with(_with(RUN, "--calibration", "c4"), "--calibration-opt",
                                                "path={D}/t3/deep.jsonl"), *OUT], msg="nested too deeply"),
        Case("json3/allocate-stats-bigint", ["allocate", "--allocator", "owl", "--stats", "{D}/stats3/bigint.json"],
             msg="number too long"),
        Case("json3/allocate-stats-deep-object", ["allocate", "--allocator", "owl", "--stats", "{D}/stats3/deep_object.json"],
             msg="nested too deeply"),
        Case("json3/report-bigint", ["report", "{C}/r"], msg="number too long", keep=["r"],
             setup=_report_bigint("r")),
        Case("json3/compare-bigint", ["compare", "{C}/r", "{D}/run_good"], msg="number too long", keep=["r"],
             setup=_report_bigint("r")),
    ]
    return rows


def _report_bigint(rel: str):
    def setup(ctx):
        _copy_run(rel)(ctx)
        f = ctx.case / rel / "report.json"
        f.write_text(f.read_text().replace('"seed": 0', f'"seed": {HUGE_INT}', 1))

    return setup


def path_rows() -> list[Case]:
    """Arguments that are not UTF-8, /proc, and one-line messages of any length."""
    rows = [
        Case("path/run-out-not-utf8", [*RUN, "--out", BAD_UTF8], msg="not UTF-8"),
        Case("path/prune-save-not-utf8", [*PRUNE, "--save", BAD_UTF8], msg="not UTF-8"),
        Case("path/probe-out-not-utf8", [*PROBE, "--out", BAD_UTF8 + ".json"], msg="not UTF-8"),
        Case("path/ppl-model-not-utf8", _with(PPL, "--model", BAD_UTF8), msg="not UTF-8"),
        Case("path/run-calibration-not-utf8", [*_with(RUN, "--calibration-opt", "path=" + BAD_UTF8), *OUT], msg="not UTF-8"),
        Case("path/report-not-utf8", ["report", BAD_UTF8], msg="not UTF-8"),
        Case("path/compare-not-utf8", ["compare", BAD_UTF8, "{D}/run_good"], msg="not UTF-8"),
        Case("path/config-show-not-utf8", ["config", "show", "--config", BAD_UTF8], msg="not UTF-8"),
        Case("path/probe-out-proc-file", [*PROBE, "--out", "/proc/self/comm"], msg=ALREADY),
        Case("path/probe-out-proc-file-overwrite", [*PROBE, "--out", "/proc/self/comm", "--overwrite"],
             msg="truthprune did not write it"),
        Case("path/run-out-proc-new", [*RUN, "--out", "/proc/truthprune-out"], msg="not writable"),
        Case("path/compare-out-proc-self", ["compare", "{C}/r", "{D}/run_good", "--out", "/proc/self", "--overwrite"],
             setup=_copy_run("r"), msg="truthprune did not write it"),
        Case("path/prune-save-proc-new", [*PRUNE, "--save", "/proc/truthprune-save"], msg="not writable"),
        Case("path/probe-plot-proc", [*PROBE, "--plot", "/proc/truthprune-plots"], msg="not writable"),
        Case("path/truthfulness-out-proc", ["eval", "truthfulness", "--model", "{D}/tiny", "--device", "cpu", "--out",
                                            "/proc/truthprune.json"], msg="not writable"),
        Case("message/run-pruner-100kb", [*RUN, *OUT, "--pruner", LONG], msg="unknown pruner"),
        Case("message/probe-datasets-100kb", [*PROBE, "--datasets", LONG], msg="no statement file"),
        Case("message/config-show-config-100kb", ["config", "show", "--config", "{C}/" + "y" * 100 + "/" + LONG],
             msg="config file"),
        Case("message/report-file-not-json", ["report", "{D}/afile"], msg="not valid JSON"),
        Case("message/report-json-is-dir", ["report", "{C}/r"], setup=lambda ctx: (ctx.case / "r" / "report.json").mkdir(parents=True),
             msg="is a directory, not a report"),
        Case("message/ppl-data-dir-kind", _with(PPL, "--data", "{D}/t"), msg="a directory"),
        Case("message/run-truth-data-is-file", [*_with([*RUN, *OUT], "--eval", "probe"), "--truth-data", "{D}/afile"],
             msg="not a directory"),
    ]
    return rows


def late_rows() -> list[Case]:
    """Checks that used to come after the model loaded."""
    return [
        Case("late/probe-test-fraction-1.5", [*PROBE, "--test-fraction", "1.5"], msg="--test-fraction"),
        Case("late/probe-test-fraction-0", [*PROBE, "--test-fraction", "0"], msg="--test-fraction"),
        Case("late/probe-test-fraction-negative", [*PROBE, "--test-fraction", "-0.2"], msg="--test-fraction"),
        Case("late/probe-test-fraction-nan", [*PROBE, "--test-fraction", "nan"], msg="--test-fraction"),
        Case("late/probe-layers-99", [*PROBE, "--layers", "99"], msg="--layers: layer 99 does not exist"),
        Case("late/probe-layers-minus-99", [*PROBE, "--layers", "-99"], msg="--layers: layer -99"),
        Case("late/probe-layers-range", [*PROBE, "--layers", "1-40"], msg="--layers: layer 3 does not exist"),
        Case("late/probe-generalization-layers-99", [*PROBE, "--generalization-layers", "99"],
             msg="--generalization-layers: layer 99"),
        Case("late/run-nm-2-3", [*RUN, *OUT, "--nm", "2:3"], msg="--nm 2:3.*not a multiple of 3"),
        Case("late/prune-nm-2-3", [*PRUNE, *SAVE, "--nm", "2:3"], msg="--nm 2:3.*not a multiple of 3"),
        Case("late/prune-offload-nm-5-7", [*PRUNE, *SAVE, "--offload", "--nm", "5:7"], msg="not a multiple of 7"),
        Case("late/run-c4-offline", [*_with(RUN_NO_CALIB, "--calibration", "c4"), *OUT], env=OFFLINE,
             msg="cannot be downloaded|unreachable|local"),
        Case("late/run-wikitext2-calibration-offline", [*_with(RUN_NO_CALIB, "--calibration", "wikitext2"), *OUT],
             env=OFFLINE, msg="cannot be downloaded|unreachable|local"),
        Case("late/prune-c4-offline", [*_with(PRUNE_NO_CALIB, "--calibration", "c4"), *SAVE], env=OFFLINE,
             msg="cannot be downloaded|unreachable|local"),
        Case("late/run-ppl-wikitext2-offline", [*_with(RUN, "--ppl-data", "wikitext2"), *OUT], env=OFFLINE,
             msg="cannot be downloaded|unreachable|local"),
        Case("late/run-truthfulqa-hub-offline", [*_with([*RUN, *OUT], "--eval", "truthfulqa")], env=OFFLINE,
             msg="cannot be downloaded|unreachable|local"),
    ]


def plugin_rows() -> list[Case]:
    """Plugins: NaN weights, a print at import, an entry point named like a first-party one, run-time faults."""
    rows = [
        Case("plugins3/nan-weights", [*RUN, *OUT, "--pruner", "nanpruner"], plugins=["nanpruner"], code=3, plan_time=False,
             msg="nanpruner.*NaN or Inf", absent=["out"]),
        Case("plugins3/print-at-import-json", ALLOC, code=0, plugins=["printer"], msg="sparsity",
             warn="hello from a chatty plugin", out_check=_json_stdout),
        Case("plugins3/print-at-import-config-show", ["config", "show"], code=0, plugins=["printer"], msg='"pruner"',
             out_check=_json_stdout),
        Case("plugins3/entry-point-named-like-first-party", ["plugins"], code=0, plugins=["owlclash"], msg="owl",
             warn="entry point 'owl' is declared by distribution .* and by distribution"),
        Case("plugins3/first-party-still-works", [*RUN, "--pruner", "owl", *EXISTS], plugins=["owlclash"], msg=ALREADY,
             warn="entry point 'owl'"),
        Case("plugins3/quantizer-wrong-return", [*RUN, *OUT, "--quantizer", "badquant"], plugins=["badquant"], code=3,
             plan_time=False, msg="badquant.*QuantResult", absent=["out"]),
    ]
    expect = {"oovsource": "token id 100000", "shortsource": r"\[4, 29\]", "listsource": "must return CalibrationSamples",
              "floatsource": "dtype torch.float32", "raisesource": "raised IndexError"}
    rows += [Case(f"plugins3/calibration-{k}", [*_with(RUN_NO_CALIB, "--calibration", k), *OUT], plugins=[k], code=3,
                  plan_time=False, msg=f"calibration source '{k}'.*{m}", absent=["out"]) for k, m in expect.items()]
    return rows


def _json_stdout(out: str) -> str | None:
    try:
        json.loads(out)
    except ValueError as err:
        return f"not JSON ({err}): {out[:200]!r}"
    return None


def env_rows() -> list[Case]:
    dist = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "{PORT}"}
    return [
        Case("dist/prune-rank1-without-rank0", [*PRUNE, *SAVE], env={**dist, "TRUTHPRUNE_DIST_TIMEOUT": "1"},
             msg="rank 1 of 2 found no rank 0 .* within 1 s"),
        Case("dist/prune-rank0-without-rank1", [*PRUNE, *SAVE], env={**dist, "RANK": "0", "TRUTHPRUNE_DIST_TIMEOUT": "1"},
             msg=r"rank\(s\) 1 did not start within 1 s", absent=["save"]),
        Case("dist/prune-timeout-abc", [*PRUNE, *SAVE], env={**dist, "TRUTHPRUNE_DIST_TIMEOUT": "abc"},
             msg="TRUTHPRUNE_DIST_TIMEOUT"),
        Case("dist/prune-timeout-negative", [*PRUNE, *SAVE], env={**dist, "TRUTHPRUNE_DIST_TIMEOUT": "-5"},
             msg="TRUTHPRUNE_DIST_TIMEOUT"),
    ]


def cache_rows() -> list[Case]:
    return [Case("cache/run-truncated-entries", [*_with(RUN, "--eval", "ppl,probe"), "--out", "{C}/o2"],
                 env={"TRUTHPRUNE_CACHE": "{C}/cache"}, setup=_truncated_cache, code=0, plan_time=False,
                 msg="full report: ", warn="(?s)(?=.*discarded the damaged cached ppl result)(?=.*discarded the damaged cached activations)")]


def _truncated_cache(ctx):
    """setup: fill a case-local cache with one run, then cut every cached result in half."""
    from bad_inputs_lib import environment, invoke

    with environment({"TRUTHPRUNE_CACHE": str(ctx.case / "cache")}):
        args = [a.replace("{D}", str(ctx.base)) for a in _with(RUN, "--eval", "ppl,probe")]
        result = invoke([*args, "--out", str(ctx.case / "o1")], cwd=ctx.case)
    assert result.code == 0, result.err[-2000:]
    cut = 0
    for f in (ctx.case / "cache").rglob("*"):
        if f.is_file() and f.suffix in (".json", ".npy") and "results" in f.parts or f.suffix == ".npy":
            data = f.read_bytes()
            f.write_bytes(data[: len(data) // 2])
            cut += 1
    assert cut >= 2, "the first run cached nothing"


def all_rows() -> list[Case]:
    return [*model_rows(), *fifo_rows(), *config_rows(), *text_rows(), *path_rows(), *late_rows(), *plugin_rows(),
            *env_rows(), *cache_rows()]


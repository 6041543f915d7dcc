"""Bad-input rows of the serving commands and flags: ``export``, ``inspect``, ``--format``, finetune's
``--keep-sparsity`` (see bad_inputs_rows for the conventions).

The compressed-tensors version rows patch the installed version as package metadata reports it (the
check reads metadata only), so they run whether or not compressed-tensors is installed. The quantized
input checkpoints are made once per session by the CLI itself, under the shared inputs directory.
"""

from __future__ import annotations

import shutil
from importlib import metadata

from bad_inputs_lib import Case, invoke
from bad_inputs_rows import ALREADY, OUT, PRUNE, RUN, SAVE

QUANT = {"q": ["--quantizer", "rtn", "--bits", "4", "--group-size", "16"],
         "q_actorder": ["--quantizer", "gptq", "--bits", "4", "--group-size", "16", "--quantizer-opt", "act_order=true"]}
FINETUNE = ("finetune --model {D}/tiny --calibration text --calibration-opt path={D}/calib.txt --nsamples 4 --seqlen 32 "
            "--steps 1 --device cpu --quiet").split()


def _quantized(name: str):
    """setup: {C}/name, a quantized truthprune checkpoint (sidecar format), built once under {D}."""

    def setup(ctx):
        made = ctx.base / f"serving_{name}"
        if not made.is_dir():
            argv = [a.replace("{D}", str(ctx.base)) for a in PRUNE] + QUANT[name] + ["--save", str(made)]
            result = invoke(argv, cwd=ctx.base)
            assert result.code == 0, result.err[-2000:]
        shutil.copytree(made, ctx.case / name)

    return setup


def _ct_version(version: str | None):
    """patch: package metadata reports compressed-tensors ``version`` (None: not installed)."""

    def patch(mp, ctx):
        real = metadata.version

        def fake(dist):
            if dist == "compressed-tensors":
                if version is None:
                    raise metadata.PackageNotFoundError(dist)
                return version
            return real(dist)

        mp.setattr(metadata, "version", fake)

    return patch


def _tiny_with(files: dict[str, str]):
    def setup(ctx):
        shutil.copytree(ctx.base / "tiny", ctx.case / "m")
        for name, text in files.items():
            (ctx.case / "m" / name).write_text(text)

    return setup


def export_rows() -> list[Case]:
    ok = _ct_version("0.20.1")  # rows about other problems: the installed version is not the question
    return [
        Case("export/not-quantized", ["export", "{D}/tiny", "--out", "{C}/x"], msg="not quantized", absent=["x"], patch=ok),
        Case("export/unknown-format", ["export", "{C}/q", "--format", "gguf", "--out", "{C}/x"], msg="unknown --format",
             setup=_quantized("q"), absent=["x"], keep=["q"]),
        Case("export/no-out", ["export", "{C}/q"], msg="needs --out", setup=_quantized("q"), keep=["q"]),
        Case("export/missing-input", ["export", "{C}/nope", "--out", "{C}/x"], msg="not a checkpoint directory", absent=["x"]),
        Case("export/input-is-a-file", ["export", "{D}/afile", "--out", "{C}/x"], msg="not a checkpoint directory"),
        Case("export/ct-too-old", ["export", "{C}/q", "--out", "{C}/x"], msg=r"compressed-tensors 0\.12\.0 is installed",
             setup=_quantized("q"), patch=_ct_version("0.12.0"), absent=["x"], keep=["q"]),
        Case("export/ct-too-new", ["export", "{C}/q", "--out", "{C}/x"], msg=r"compressed-tensors 0\.30\.0 is installed",
             setup=_quantized("q"), patch=_ct_version("0.30.0"), absent=["x"], keep=["q"]),
        Case("export/ct-missing", ["export", "{C}/q", "--out", "{C}/x"], msg="needs the compressed-tensors package",
             setup=_quantized("q"), patch=_ct_version(None), absent=["x"], keep=["q"]),
        Case("export/act-order-groups", ["export", "{C}/q_actorder", "--out", "{C}/x"], msg="act-order",
             setup=_quantized("q_actorder"), patch=ok, absent=["x"], keep=["q_actorder"]),
        Case("export/out-is-input", ["export", "{C}/q", "--out", "{C}/q"], msg="is the input checkpoint",
             setup=_quantized("q"), patch=ok, keep=["q"]),
        Case("export/out-exists", ["export", "{C}/q", "--out", "{D}/tiny"], msg=ALREADY, setup=_quantized("q"), patch=ok,
             keep=["q", "{D}/tiny"]),
        Case("export/bad-truthprune-json", ["export", "{C}/m", "--out", "{C}/x"], msg="not valid JSON",
             setup=_tiny_with({"truthprune.json": "{not json"}), absent=["x"], keep=["m"]),
    ]


def format_rows() -> list[Case]:
    ct = ["--format", "compressed-tensors"]
    return [
        Case("format/run-unknown", [*RUN, "--format", "gguf", *OUT], msg="format", absent=["out"]),
        Case("format/prune-unknown", [*PRUNE, "--format", "gguf", *SAVE], msg="format", absent=["save"]),
        Case("format/run-ct-no-quantizer", [*RUN, *ct, *SAVE, *OUT], msg="no --quantizer", absent=["out", "save"]),
        Case("format/run-ct-no-save", [*RUN, "--quantizer", "rtn", *ct, *OUT], msg="no --save DIR", absent=["out"],
             patch=_ct_version("0.20.1")),
        Case("format/prune-ct-too-old", [*PRUNE, "--quantizer", "rtn", *ct, *SAVE], msg=r"compressed-tensors 0\.12\.0",
             patch=_ct_version("0.12.0"), absent=["save"]),
        Case("format/prune-ct-missing", [*PRUNE, "--quantizer", "rtn", *ct, *SAVE], msg="needs the compressed-tensors",
             patch=_ct_version(None), absent=["save"]),
        Case("format/prune-ct-act-order", [*PRUNE, "--quantizer", "gptq", "--quantizer-opt", "act_order=true", *ct, *SAVE],
             msg="act-order", patch=_ct_version("0.20.1"), absent=["save"]),
    ]


def inspect_rows() -> list[Case]:
    return [
        Case("inspect/missing", ["inspect", "{C}/nope"], msg="not a checkpoint directory"),
        Case("inspect/a-file", ["inspect", "{D}/afile"], msg="not a checkpoint directory"),
        Case("inspect/no-safetensors", ["inspect", "{D}/m_binonly"], msg="no model.safetensors"),
        Case("inspect/bad-truthprune-json", ["inspect", "{C}/m"], msg="not valid JSON",
             setup=_tiny_with({"truthprune.json": "{not json"}), keep=["m"]),
        Case("inspect/no-args", ["inspect"], msg="missing argument"),
    ]


def finetune_rows() -> list[Case]:
    return [
        Case("finetune/keep-sparsity-unknown", [*FINETUNE, "--keep-sparsity", "bogus", *SAVE], msg="--keep-sparsity",
             absent=["save"]),
        Case("finetune/adapter-with-dropout", [*FINETUNE, "--keep-sparsity", "adapter", "--dropout", "0.1", *SAVE],
             msg="dropout", absent=["save"]),
    ]


def serving_rows() -> list[Case]:
    return [*export_rows(), *format_rows(), *inspect_rows(), *finetune_rows()]

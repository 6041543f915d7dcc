"""``prune --offload`` as a property of the plan (``RunPlan.offload``): the weights stay on disk.

The run executes the same :data:`truthprune.run.pipeline.STAGES` as an in-memory prune; with
``offload`` the ``load`` stage does not apply, ``calibrate`` works from the checkpoint's tokenizer
(:func:`checkpoint_tokenizer`), and the ``prune`` stage hands the checkpoint to the offload engine
(:func:`prune_offloaded`), which writes the pruned checkpoint and its ``truthprune.json`` itself,
one decoder layer at a time; the ``save`` stage therefore does not apply either.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..models.context import check_seqlen
from ..models.loading import resolve_model_path
from ..models.spec import model_ref
from ..models.support import selection_of
from .metadata import calibration_summary, prune_metadata, pruning_metadata
from .state import RunState


def check_offload(plan: Any) -> None:
    """Plan-time: refuse what offload mode cannot do, before anything is loaded or converted."""
    if plan.quantizer is not None:
        raise UserError(f"--offload does not quantize yet (the codes of every layer are kept for the sidecar); drop --offload "
                        f"to use --quantizer {plan.quantizer.name}")
    if plan.allocator.needs_truth_profile:
        raise UserError(
            f"--offload cannot compute the truth profile allocator {plan.allocator.name!r} needs (it runs the whole dense "
            "model on the truth statements); drop --offload, or use an allocator without a truth profile (e.g. owl)"
        )
    if getattr(plan.pruner, "uses_model", False):
        raise UserError(f"pruner {plan.pruner.name!r} scores weights with a backward pass through the whole model, which "
                        "--offload never holds in memory; drop --offload")
    for src in plan.sources:
        if src.needs_model:
            raise UserError(f"calibration source {src.name!r} samples text from the loaded model, which --offload never loads; "
                            "choose another --calibration or drop --offload")
    if not plan.model_ref.converts:  # a .gguf is checked once the convert-gguf stage has converted it
        checkpoint_dir(plan.config)


def checkpoint_dir(cfg: Any) -> str:
    """The local safetensors checkpoint offload mode reads (after the convert-gguf stage: cached)."""
    path, kind = resolve_model_path(cfg.model)
    if kind == "hub":
        raise UserError(f"--offload reads a local safetensors checkpoint, and {cfg.model!r} is not a local path; download it "
                        "first (huggingface-cli download ...) and pass its directory, or drop --offload")
    from ..pruning.engine.checkpoint import CheckpointReader  # imports torch: after the cheap checks

    CheckpointReader(path)  # UserError unless model.safetensors or its sharded index is there
    return path


def checkpoint_tokenizer(cfg: Any) -> Any:
    """The tokenizer calibration works from when the model never loads; ``--seqlen`` checked against
    the checkpoint's context first."""
    from transformers import AutoTokenizer

    path = checkpoint_dir(cfg)
    check_seqlen(cfg.seqlen, model_ref(path).context)
    return AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)


def prune_offloaded(state: RunState, quiet: bool, quantized: Any) -> Any:  # noqa: ARG001 - refused at plan time
    """The prune step of an offload plan: the offload engine prunes the checkpoint into ``--save``
    and writes its truthprune.json, completed with what only the finished prune knows."""
    from ..pruning.engine.distributed import data_parallel
    from ..pruning.engine.offload import prune_checkpoint

    plan = state.plan
    cfg = plan.config
    path = checkpoint_dir(cfg)
    metadata = prune_metadata(cfg, "offload", data_parallel().world, path, calibration_summary(cfg, state.calibration))
    return prune_checkpoint(
        cfg.model, cfg.save, state.calibration, plan.pruner, plan.allocator, cfg.sparsity, nm=cfg.nm_tuple,
        batch_size=cfg.batch_size, device=plan.device or cfg.device, dtype=cfg.dtype, quiet=quiet, metadata=metadata,
        finish_metadata=lambda report: pruning_metadata(plan, report, None), overwrite=cfg.overwrite,
        activations_dir=plan.activations_dir, trust_remote_code=cfg.trust_remote_code, selection=selection_of(cfg),
        bias_correction=cfg.bias_correction,
    )


__all__ = ["check_offload", "checkpoint_dir", "checkpoint_tokenizer", "prune_offloaded"]

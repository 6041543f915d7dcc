"""Bounded-memory pruning: weights stay on disk, one decoder layer is in memory at a time.

The model is built as a skeleton whose parameters sit on the ``meta`` device (no memory; its
non-persistent buffers such as rotary frequencies are real, so they are computed exactly as in
a normal load). Only what a step needs is read from the safetensors checkpoint:

* capturing the layer-0 inputs needs the modules outside the decoder stack except the output
  head (embeddings, final norm); they are released right after;
* decoder layer ``i`` is materialised on the compute device, its statistics gathered, pruned,
  run to produce layer ``i + 1``'s inputs, written straight to its own output shard in the
  checkpoint's dtype, and released.

The output is a complete ``from_pretrained`` checkpoint: config and tokenizer files copied from
the source, the untouched tensors (embeddings, norms, head) copied tensor by tensor, one shard
per pruned layer and the shard index. Calibration activations stay on the CPU, in memory or
memory-mapped from files under ``activations_dir``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ...environment import environment_versions
from ...errors import UserError
from ...plugin.interfaces import CalibrationSamples, Pruner, SparsityAllocator
from ...models.adapter import decoder_layers
from .checkpoint import INDEX, SINGLE, CheckpointReader, ShardWriter, group_by_size
from .distributed import data_parallel
from .memory import ModelShape, StreamExtent, available_memory, check_memory, estimate_memory
from .sequential import EngineSetup, PruneOptions, run_engine
from .steps import PruneReport
from ...models.loading import resolve_device, resolve_dtype, resolve_model_path
from ...outputs.atomic import atomic_dir, check_target

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")


def _set_param(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, attr = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    module._parameters[attr] = torch.nn.Parameter(value, requires_grad=False)


def _release(model: torch.nn.Module, names: list[str]) -> None:
    """Put parameters back on the meta device (frees their memory)."""
    for name in names:
        owner, _, attr = name.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        p = module._parameters[attr]
        module._parameters[attr] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="meta"), requires_grad=False)


class OffloadedLayers:
    """Layer source that reads each decoder layer from the checkpoint and writes it when pruned."""

    def __init__(self, model, reader: CheckpointReader, prefix: str, device, dtype, writer: ShardWriter | None,
                 zero_biases: bool = False):
        self.model = model
        self.layers = decoder_layers(model)
        self.reader = reader
        self.prefix = prefix
        self.device = device
        self.dtype = dtype
        self.writer = writer
        self._names = [[n for n, _ in layer.named_parameters()] for layer in self.layers]
        missing = [f"{prefix}.{i}.{n}" for i, names in enumerate(self._names) for n in names if f"{prefix}.{i}.{n}" not in reader]
        # --bias-correction built the skeleton with bias flags on: the biases they add start at zero
        self._zero = {k for k in missing if k.endswith(".bias") and zero_biases}
        missing = [k for k in missing if k not in self._zero]
        if missing:
            raise UserError(
                f"the checkpoint lacks {len(missing)} decoder-layer tensors (e.g. {missing[0]!r}); offload mode needs tensor "
                "names as save_pretrained writes them: load the model once, save it with save_pretrained, and offload that copy"
            )

    @contextmanager
    def outer(self):
        """Embeddings (and other modules before layer 0, not the head) while capturing."""
        names = _outer_params(self.model, self.prefix)
        missing = [n for n in names if n not in self.reader]
        if missing:
            raise UserError(f"the checkpoint lacks {missing[0]!r}; offload mode needs a checkpoint written by save_pretrained")
        for n in names:
            t = self.reader.get(n)
            _set_param(self.model, n, t.to(device=self.device, dtype=self.dtype if t.is_floating_point() else t.dtype))
        try:
            yield
        finally:
            _release(self.model, names)

    def _tensor(self, key: str, like: torch.Tensor) -> torch.Tensor:
        if key in self._zero:
            return torch.zeros(like.shape, dtype=like.dtype)
        return self.reader.get(key)

    def open(self, index: int) -> torch.nn.Module:
        params = dict(self.layers[index].named_parameters())
        for name in self._names[index]:
            t = self._tensor(f"{self.prefix}.{index}.{name}", params[name])
            _set_param(self.layers[index], name, t.to(device=self.device, dtype=self.dtype if t.is_floating_point() else t.dtype))
        return self.layers[index]

    def close(self, index: int, pruned: bool) -> None:
        layer = self.layers[index]
        if pruned and self.writer is not None:
            params = dict(layer.named_parameters())
            out = {}
            head = f"{self.prefix}.{index}."
            for key in self.reader.keys():
                if not key.startswith(head):
                    continue
                local = key[len(head):]
                if local in params:
                    src_dtype = _st_dtype(self.reader._meta[key][0])
                    out[key] = params[local].detach().to("cpu", dtype=src_dtype or params[local].dtype)
                else:  # a persistent buffer or anything else stored with the layer: copied as is
                    out[key] = self.reader.get(key)
            for key in self._zero:  # the biases --bias-correction added, in their weight's stored dtype
                if key.startswith(head):
                    weight_dtype = _st_dtype(self.reader._meta[key[: -len("bias")] + "weight"][0])
                    bias = params[key[len(head):]]
                    out[key] = bias.detach().to("cpu", dtype=weight_dtype or bias.dtype)
            self.writer.write(out)
        _release(layer, self._names[index])


def _st_dtype(code: str):
    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(code)


def _skeleton(path: str, dtype, trust_remote_code: bool, bias_flags: tuple[str, ...] = ()):
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from .bias import with_flags

    config = with_flags(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), bias_flags)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    model.eval()
    model.config.use_cache = False
    return model


def _layers_prefix(model) -> str:
    layers = decoder_layers(model)
    return next(name for name, m in model.named_modules() if m is layers)


def _outer_params(model, prefix: str) -> list[str]:
    """Parameters outside the decoder stack that the forward up to layer 0 may use (not the head)."""
    head = model.get_output_embeddings()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    emb = model.get_input_embeddings()
    keep_ids = {id(p) for p in emb.parameters()} if emb is not None else set()
    names = []
    for name, p in model.named_parameters():
        if name.startswith(prefix + "."):
            continue
        if id(p) in head_ids and id(p) not in keep_ids:
            continue
        names.append(name)
    return names


def _copy_side_files(src: Path, dst: Path) -> None:
    """Config, generation config, tokenizer and any other non-weight file of the source model."""
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(_WEIGHT_SUFFIXES) and f.name not in (INDEX, "truthprune.json") and not f.name.startswith("."):
            shutil.copy2(f, dst / f.name)


def prune_checkpoint(
    model: str,
    out_dir: str | Path,
    calibration: CalibrationSamples,
    pruner: Pruner,
    allocator: SparsityAllocator,
    sparsity: float,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    metadata: dict[str, Any] | None = None,
    finish_metadata: Callable[[PruneReport], dict[str, Any]] | None = None,
    overwrite: bool = False,
    activations_dir: str | None = None,
    trust_remote_code: bool = False,
    **options: Any,
) -> PruneReport:
    """Prune the checkpoint ``model`` (a ``--model`` spec with a local safetensors copy) into ``out_dir``;
    ``options`` are the :class:`~truthprune.pruning.engine.sequential.PruneOptions` of ``prune_model``
    (nm, batch_size, truth_profile, extras, quiet, selection). ``metadata`` goes into the checkpoint's
    truthprune.json, and ``finish_metadata(report)`` (a callback) adds what only the finished prune
    knows, inside the same atomic write.

    Peak memory is about one decoder layer (twice, while it is converted for writing) plus the
    calibration activations; the call refuses to start (UserError) when its estimate exceeds
    the available memory. Under torchrun every rank computes and only rank 0 writes.
    """
    o = PruneOptions(**options)
    if pruner.uses_model:
        raise UserError(f"pruner {pruner.name!r} scores weights with a pass through the whole model, which offload mode "
                        "never holds in memory; prune it in memory (prune_model)")
    dev = resolve_device(device)
    compute_dtype = resolve_dtype(dtype, dev)
    path, kind = resolve_model_path(model)
    if kind == "hub":
        raise UserError(f"offload mode reads a local checkpoint; download {model!r} first (e.g. huggingface-cli download) and pass its directory")
    check_target(out_dir, overwrite, what="--save")
    reader = CheckpointReader(path)
    flags: tuple[str, ...] = ()
    if o.bias_correction:  # the skeleton gets the flags' biases (zeros until corrected); config.json gets the flags
        from transformers import AutoConfig

        from .bias import plan_bias

        flags = plan_bias(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), o.selection,
                                trust_remote_code).flags
    skeleton = _skeleton(path, compute_dtype, trust_remote_code, flags)
    dp = data_parallel()
    elem = torch.finfo(compute_dtype).bits // 8
    est = estimate_memory(
        ModelShape.from_config(skeleton.config, total_params=sum(p.numel() for p in skeleton.parameters())),
        len(calibration), int(calibration.input_ids.shape[1]), o.batch_size, weight_bytes=elem, act_bytes=elem,
        offload=True, padded=not bool(calibration.attention_mask.bool().all()),
        gram="gram" in (pruner.required_stats | allocator.required_stats), world=dp.world,
        dense=o.bias_correction or "cross" in pruner.required_stats, dense_rows="cross" in pruner.required_stats,
        auxiliary=StreamExtent.of(calibration),
    )
    log.info("%s", check_memory(est, available_memory() if activations_dir is None else None, offload=True))

    prefix = _layers_prefix(skeleton)
    layer_heads = [f"{prefix}.{i}." for i in range(len(decoder_layers(skeleton)))]
    outer_keys = [k for k in reader.keys() if not any(k.startswith(h) for h in layer_heads)]
    sizes = {k: reader.nbytes(k) for k in outer_keys}
    largest_layer = max(sum(reader.nbytes(k) for k in reader.keys() if k.startswith(h)) for h in layer_heads)
    groups = group_by_size(outer_keys, sizes, max(largest_layer, 1))
    setup = EngineSetup(device=torch.device(dev), batch_size=o.batch_size, quiet=o.quiet, dp=dp, activations_dir=activations_dir,
                        selection=o.selection)

    def run(writer: ShardWriter | None) -> PruneReport:
        source = OffloadedLayers(skeleton, reader, prefix, setup.device, compute_dtype, writer, zero_biases=bool(flags))
        if writer is not None:
            for group in groups:
                writer.write({k: reader.get(k) for k in group})
        return run_engine(skeleton, source, calibration, pruner, allocator, sparsity, setup,
                          nm=o.nm, truth_profile=o.truth_profile, extras=o.extras, bias_correction=o.bias_correction)

    if not dp.is_writer:
        report = run(None)
        dp.barrier()
        return report
    with atomic_dir(out_dir, overwrite=overwrite, what="--save", kind="prune") as tmp:
        writer = ShardWriter(tmp, len(groups) + len(layer_heads))
        report = run(writer)
        writer.finish()
        _copy_side_files(Path(path), tmp)
        if flags:
            from .bias import set_flags_in_config_json

            set_flags_in_config_json(tmp / "config.json", flags)
        meta = {"versions": environment_versions(), "offload": True, "source": str(path), **(metadata or {})}
        meta.setdefault("pruning", report.as_dict())
        if finish_metadata is not None:  # what only the finished prune knows, from the caller (no second write)
            meta.update(finish_metadata(report))
        (tmp / "truthprune.json").write_text(json.dumps(meta, indent=2, default=str))
    dp.barrier()
    log.info("wrote the pruned checkpoint to %s (%d shards)", out_dir, writer.n_shards)
    return report


__all__ = ["prune_checkpoint", "SINGLE", "INDEX"]

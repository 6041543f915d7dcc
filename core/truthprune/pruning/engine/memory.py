"""Up-front memory estimate for a prune, and a refusal that names the flag which fixes it.

Why estimate at all: running out of memory half-way through a long prune (the kernel kills the
process, or the machine swaps to a standstill) wastes the whole run. The estimate is simple
arithmetic on the model config and the calibration size; the pieces are kept apart so the
message can say *what* does not fit:

* weights: the whole model in memory mode; in offload mode two copies of the largest decoder
  layer (the materialised layer and its converted output) or the input embeddings (needed only
  while the layer-0 inputs are captured), whichever is larger;
* activations: the current layer's inputs and outputs for every calibration sample
  (2 x N x S x d values), plus attention masks kept per sample when there is padding; twice that
  with dense-target streams (a dense-model copy of every stream, :mod:`.dense`), plus the dense
  inputs of a layer's later linears for every token when a pruner asks for the cross statistic;
  a pruner's auxiliary streams (e.g. truthaware's statements) are held the same way, counted
  by their padded tokens (:class:`StreamExtent`);
* working memory: one mini-batch inside one layer (hidden/MLP intermediates and attention
  scores), plus the statistics (the Gram matrix is the only large one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import UserError

GB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    """The few config numbers the estimate needs (from a HF config via :meth:`from_config`)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int
    layer_params: int  # prunable + norm parameters of the largest decoder layer
    total_params: int

    @classmethod
    def from_config(cls, config, total_params: int | None = None) -> ModelShape:
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        d = int(config.hidden_size)
        inter = int(getattr(config, "intermediate_size", 4 * d))
        heads = int(config.num_attention_heads)
        kv = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or d // heads)
        attn = d * heads * head_dim * 2 + d * kv * head_dim * 2
        layer = attn + 3 * d * inter + 2 * d
        vocab = int(config.vocab_size)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        total = total_params or (int(config.num_hidden_layers) * layer + vocab * d * (1 if tied else 2) + d)
        return cls(d, inter, int(config.num_hidden_layers), heads, vocab, layer, total)


@dataclass(frozen=True)
class StreamExtent:
    """The size of a calibration's auxiliary streams, which the engine holds like the main one.

    Why: a statement stream of 1,200 short sentences padded to its longest is more tokens than
    32 x 512 windows of text; leaving it out counted less than half of a truthaware prune's activations.
    """

    tokens: int = 0  # padded tokens (sequences x padded length), summed over the streams
    rows: int = 0  # tokens its statistics read (the stat mask: a statement's last token)
    mask_bytes: int = 0  # one bool [L, L] attention mask per padded sequence

    @classmethod
    def of(cls, calibration) -> StreamExtent:
        """The extent of ``calibration.auxiliary`` (a dict of CalibrationSamples)."""
        return cls.of_streams(getattr(calibration, "auxiliary", None) or {})

    @classmethod
    def of_streams(cls, streams) -> StreamExtent:
        """The extent of named streams (CalibrationSamples), e.g. a pruner's ``auxiliary_calibration()``."""
        tokens = rows = masks = 0
        for s in streams.values():
            n, length = (int(x) for x in s.input_ids.shape)
            tokens += n * length
            real = s.attention_mask.bool()
            rows += int((real & s.stat_mask.bool()).sum()) if s.stat_mask is not None else int(real.sum())
            if not bool(real.all()):
                masks += n * length * length
        return cls(tokens, rows, masks)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int  # resident weight bytes in the mode estimated
    activations: int
    working: int
    offload_weights: int  # what the weights would take with --offload (to suggest it)

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.working


def estimate_memory(
    shape: ModelShape,
    nsamples: int,
    seqlen: int,
    batch_size: int,
    weight_bytes: int = 4,
    act_bytes: int = 4,
    offload: bool = False,
    padded: bool = False,
    gram: bool = False,
    world: int = 1,
    dense: bool = False,
    dense_rows: bool = False,
    auxiliary: StreamExtent | None = None,
) -> MemoryEstimate:
    """Bytes this process needs; ``world`` ranks each hold 1/world of the activations; ``dense``:
    the dense-target streams double the activations and add one batch of linear inputs;
    ``dense_rows`` (block-sequential passes of a cross-statistic pruner): the dense model's inputs
    of a layer's later linears are kept for every calibration token (float32); ``auxiliary``:
    a pruner's extra streams, held like the main one (and doubled, dense rows included, likewise)."""
    local = -(-nsamples // world)
    aux = auxiliary or StreamExtent()
    offload_weights = max(2 * shape.layer_params * weight_bytes, shape.vocab * shape.hidden * weight_bytes)
    weights = offload_weights if offload else shape.total_params * weight_bytes
    acts = 2 * local * seqlen * shape.hidden * act_bytes
    if padded:
        acts += local * seqlen * seqlen  # one bool [S, S] mask per sample
    acts += 2 * -(-aux.tokens // world) * shape.hidden * act_bytes + -(-aux.mask_bytes // world)
    b = min(batch_size, local)
    working = b * seqlen * (6 * shape.hidden + 3 * shape.intermediate) * act_bytes
    working += b * shape.heads * seqlen * seqlen * act_bytes  # attention scores (math/eager kernels)
    if gram:
        working += 7 * 12 * max(shape.hidden, shape.intermediate) ** 2  # float64 sums + float32 copy
    if dense:
        acts += 2 * (local * seqlen + -(-aux.tokens // world)) * shape.hidden * act_bytes  # the dense copy of every stream
        working += b * seqlen * (3 * shape.hidden + shape.intermediate) * 4  # one batch's dense linear inputs (float32)
        working += 7 * 12 * max(shape.hidden, shape.intermediate) ** 2  # the cross statistic, like the Gram
    if dense_rows:
        rows = local * seqlen + -(-aux.rows // world)
        acts += rows * (2 * shape.hidden + shape.intermediate) * 4  # o_proj, gate/up and down_proj inputs
    return MemoryEstimate(weights, acts, working, offload_weights)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(est: MemoryEstimate, available: int | None, offload: bool, weights_resident: bool = False,
                 can_offload: bool = True) -> str:
    """Return the one-line estimate, or raise UserError naming the fix when it does not fit.

    ``weights_resident``: the model is already loaded (its weights are in use, not in
    ``available``), so only activations and working memory must still fit. ``can_offload``:
    the command has --offload (prune), so it is the fix when only the weights do not fit.
    """
    need = est.activations + est.working + (0 if weights_resident else est.weights)
    line = (
        f"calibration needs ~{(est.activations + est.working) / GB:.2f} GB "
        f"(activations {est.activations / GB:.2f} GB, working {est.working / GB:.2f} GB); "
        f"weights in memory ~{est.weights / GB:.2f} GB{' (offload)' if offload else ''}"
    )
    if available is None or need <= available:
        return line
    have = f"only {available / GB:.2f} GB is available"
    if can_offload and not offload and not weights_resident and est.activations + est.working + est.offload_weights <= available:
        raise UserError(f"{line}, but {have}; pass --offload to keep the weights on disk and load one layer at a time")
    raise UserError(f"{line}, but {have}; lower --nsamples or --seqlen (activations grow with both), or --batch-size for working memory")


def check_prune_memory(
    model_path: str,
    nsamples: int,
    seqlen: int,
    batch_size: int = 8,
    dtype_bytes: int = 4,
    offload: bool = False,
    padded: bool = False,
    world: int = 1,
) -> str:
    """Check a planned prune against available memory *before* the model is loaded.

    Reads only the model's config. Returns the one-line estimate for the log, or raises
    UserError naming ``--offload`` (weights do not fit) or ``--nsamples``/``--seqlen``.
    """
    from transformers import AutoConfig

    shape = ModelShape.from_config(AutoConfig.from_pretrained(model_path))
    est = estimate_memory(shape, nsamples, seqlen, batch_size, weight_bytes=dtype_bytes, act_bytes=dtype_bytes,
                          offload=offload, padded=padded, world=world)
    return check_memory(est, available_memory(), offload=offload)

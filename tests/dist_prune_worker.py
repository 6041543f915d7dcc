"""Worker for tests/test_distributed.py: prune the tiny Llama, in memory and in offload mode.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_prune_worker.py OUT_DIR

Every rank builds the same model and calibration (seeded); the engine splits the batches across
ranks and all-reduces the statistics. Rank 0 writes ``OUT_DIR/result.pt`` (masks of the Wanda
prune, the dense pre-pass observations of a recording allocator, the allocation, and what a
recording pruner that asks for the dense-target ``cross`` statistic saw, in memory and offloaded)
and the offload-mode checkpoints ``OUT_DIR/offload`` and ``OUT_DIR/offload-dense``. Run without
torchrun it produces the one-process reference with the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from truthprune import (STAT_CROSS, STAT_SQ_NORM, STAT_SUM, CalibrationSamples, LayerInfo, Pruner, PruneResult,
                        SparsityAllocator, get_registry, mask_from_scores, prune_model, wanda_scores)


class RecordingAllocator(SparsityAllocator):
    """Needs the dense pre-pass; records what it observes and allocates from it."""

    name = "recording-test"
    needs_dense_pass = True
    required_stats = frozenset({"sq_norm"})

    def __init__(self, options=None):
        super().__init__(options)
        self.observed: dict[int, dict[str, torch.Tensor]] = {}
        self.tokens: dict[int, dict[str, int]] = {}

    def observe_layer(self, index, weights, stats):
        self.observed[index] = {n: s.sq_norm.clone() for n, s in stats.items()}
        self.tokens[index] = {n: s.n_tokens for n, s in stats.items()}

    def allocate(self, target, info: LayerInfo):
        energy = [float(sum(v.sum() for v in self.observed[i].values())) for i in range(info.num_layers)]
        order = sorted(range(info.num_layers), key=lambda i: energy[i])
        spread = [target - 0.1, target, target + 0.1]
        out = [0.0] * info.num_layers
        for rank, i in enumerate(order):
            out[i] = spread[min(rank, 2)]
        return out


class DenseRecorder(Pruner):
    """Asks for the dense-target statistics (main data and one auxiliary stream) and keeps them;
    prunes with Wanda's score on the pruned inputs, so later layers see real pruning drift."""

    name = "dense-recorder-test"
    required_stats = frozenset({STAT_SQ_NORM, STAT_SUM, STAT_CROSS})

    def __init__(self, options=None):
        super().__init__(options)
        self.seen: list[dict[str, torch.Tensor]] = []

    def prune(self, weight, stats, target):
        aux = stats.streams["aux"]
        self.seen.append({"cross": stats.cross.clone(), "dense_sum": stats.dense.sum.clone(), "dense_sq": stats.dense.sq_norm.clone(),
                          "sum": stats.sum.clone(), "n": torch.tensor(stats.n_tokens), "aux_cross": aux.cross.clone(),
                          "aux_dense_sum": aux.dense.sum.clone(), "aux_n": torch.tensor(aux.n_tokens)})
        return PruneResult(mask=mask_from_scores(wanda_scores(weight, stats.sq_norm), target))


def dense_calibration() -> CalibrationSamples:
    """The main calibration plus an auxiliary stream of short, right-padded sequences (last token only)."""
    calib = calibration()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 128, (7, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0
    stat = torch.zeros_like(ids, dtype=torch.bool)
    stat[:, 11] = True
    stat[2, 8] = True
    calib.auxiliary = {"aux": CalibrationSamples(ids, mask, stat_mask=stat)}
    return calib


def tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    model.config.use_cache = False
    return model


def calibration() -> CalibrationSamples:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (10, 48), generator=g)
    mask = torch.ones_like(ids)
    mask[3, :7] = 0  # some left padding, so token masks take part
    return CalibrationSamples(ids, mask)


def masks(model):
    from truthprune.models.adapter import decoder_layers, prunable_linears

    return [lin.weight.detach() == 0 for layer in decoder_layers(model) for lin in prunable_linears(layer).values()]


def dense_runs(src: Path, out_dir: Path) -> tuple[list, list]:
    """What :class:`DenseRecorder` sees pruning with --bias-correction in memory and offloaded (to ``out_dir/offload-dense``)."""
    from truthprune.pruning.engine.offload import prune_checkpoint

    reg = get_registry()
    dense_mem, dense_off = DenseRecorder(), DenseRecorder()
    prune_model(tiny_model(), dense_calibration(), dense_mem, reg.create("allocator", "uniform"), 0.5, batch_size=2, quiet=True,
                bias_correction=True)
    prune_checkpoint(str(src), out_dir / "offload-dense", dense_calibration(), dense_off, reg.create("allocator", "uniform"), 0.5,
                     batch_size=2, quiet=True, bias_correction=True)
    return dense_mem.seen, dense_off.seen


def run(out_dir: Path) -> dict | None:
    """Prune in both modes; return the results on the writing rank (None elsewhere)."""
    from truthprune.pruning.engine.distributed import data_parallel, init_distributed
    from truthprune.pruning.engine.offload import prune_checkpoint

    torch.set_num_threads(1)
    dp, device = init_distributed("cpu")
    reg = get_registry()
    calib = calibration()
    src = out_dir / "src"
    if dp.is_writer:
        tiny_model().save_pretrained(src)
    dp.barrier()

    model = tiny_model()
    rec = RecordingAllocator()
    report = prune_model(model, calib, reg.create("pruner", "wanda"), rec, 0.5, batch_size=2, quiet=True)
    prune_checkpoint(str(src), out_dir / "offload", calib, reg.create("pruner", "wanda"), reg.create("allocator", "uniform"),
                     0.5, batch_size=2, quiet=True)
    dense_mem, dense_off = dense_runs(src, out_dir)
    result = {"world": data_parallel().world, "masks": masks(model), "allocation": report.allocation,
              "observed": rec.observed, "tokens": rec.tokens, "dense_memory": dense_mem, "dense_offload": dense_off}
    if dp.is_writer:
        torch.save(result, out_dir / "result.pt")
        return result
    return None


if __name__ == "__main__":
    run(Path(sys.argv[1]))

"""Data parallelism for the engine with ``torch.distributed`` (gloo on CPU, nccl on GPU).

Launched under ``torchrun``, every rank builds the same calibration set (same seed) and handles
the mini-batches ``k`` with ``k % world == rank``. A batch therefore holds the same samples as in
a one-process run, so its float32 contribution to the statistics is the same; the float64 sums
are all-reduced before any mask is chosen (and before an allocator observes a layer), which is
why the masks match a one-process run. Rank 0 then broadcasts each pruned layer's weights so all
ranks continue from bit-identical layers even if a plugin were not deterministic across
processes. Only rank 0 should write outputs (:attr:`DataParallel.is_writer`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataParallel:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def my_batches(self, n_batches: int) -> list[int]:
        """Round-robin share of mini-batch indices (balanced within one batch per rank)."""
        return [k for k in range(n_batches) if k % self.world == self.rank]

    def all_reduce(self) -> Callable[[torch.Tensor], None] | None:
        """In-place sum across ranks, or None in a one-process run."""
        if not self.active:
            return None
        import torch.distributed as dist

        return lambda t: dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def broadcast_(self, tensor: torch.Tensor) -> None:
        """Overwrite ``tensor`` with rank 0's copy (contiguous tensors only)."""
        if self.active:
            import torch.distributed as dist

            dist.broadcast(tensor, src=0)

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` (any picklable value) on every rank; ``obj`` itself in a one-process run."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_writer else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def data_parallel() -> DataParallel:
    """The current process group's rank and size, or a one-process context."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DataParallel(rank=dist.get_rank(), world=dist.get_world_size())
    return DataParallel()


def init_distributed(device: str = "cpu") -> tuple[DataParallel, str]:
    """Join the process group torchrun describes in the environment; return it and the device.

    Outside torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) nothing is initialised. On CUDA each
    rank takes GPU ``LOCAL_RANK`` and the nccl backend; on CPU the gloo backend.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DataParallel(), device
    if dist.is_initialized():
        return data_parallel(), device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UserError(
                f"torchrun started {world} processes but this machine has {torch.cuda.device_count()} GPUs; "
                "use --nproc_per_node at most the number of GPUs"
            )
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    dp = data_parallel()
    log.info("data parallel: rank %d of %d (%s)", dp.rank, dp.world, backend)
    return dp, device

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
import sys
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


DEFAULT_RENDEZVOUS_S = 120.0  # TRUTHPRUNE_DIST_TIMEOUT: how long a rank waits for the others to appear


def rendezvous_timeout() -> float:
    raw = os.environ.get("TRUTHPRUNE_DIST_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_RENDEZVOUS_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise UserError(f"environment variable TRUTHPRUNE_DIST_TIMEOUT={raw!r} must be a number of seconds > 0")
    return value


def rendezvous(world: int):
    """The TCP store every rank meets at (MASTER_ADDR:MASTER_PORT), with a stated timeout.

    Why not torch's own: a rank whose rank 0 never started waited 30 minutes inside one C++ call,
    deaf to SIGTERM. Here rank 0 serves the store and the others connect in one-second attempts,
    so a signal is handled between them, and after :func:`rendezvous_timeout` seconds the command
    ends with one line saying which rank is missing."""
    import time
    from datetime import timedelta

    import torch.distributed as dist

    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    rank = int(os.environ.get("RANK", "0"))
    limit = rendezvous_timeout()
    deadline = time.monotonic() + limit
    serve = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"  # torchrun's agent serves it
    # said even under --quiet: a rank may wait minutes here, and the user must know why it is silent
    print(f"rank {rank} of {world}: meeting the other ranks at {host}:{port} (waiting at most {limit:g} s)",
          file=sys.stderr, flush=True)
    while True:
        try:
            if serve:
                store = dist.TCPStore(host, port, world, is_master=True, timeout=timedelta(seconds=limit),
                                      wait_for_workers=False, multi_tenant=True)
            else:
                _wait_until_listening(host, port, deadline)  # plain sockets: no c10d retry noise, signals handled
                store = dist.TCPStore(host, port, world, is_master=False, timeout=timedelta(seconds=max(limit, 300)))
            break
        except (RuntimeError, OSError) as err:  # DistStoreError (a RuntimeError), or the port in use
            if serve or time.monotonic() > deadline:
                who = "could not serve the rendezvous" if rank == 0 else "found no rank 0"
                raise UserError(f"rank {rank} of {world} {who} at MASTER_ADDR:MASTER_PORT = {host}:{port} within "
                                f"{limit:g} s ({type(err).__name__}); start every rank (torchrun --nproc-per-node {world} ...) "
                                "or set TRUTHPRUNE_DIST_TIMEOUT") from None
            time.sleep(0.2)
    _wait_for_ranks(store, rank, world, deadline, limit)
    return store


def _wait_until_listening(host: str, port: int, deadline: float) -> None:
    """Poll until something accepts connections at host:port (one short attempt every 0.2 s);
    OSError once the deadline has passed."""
    import socket
    import time

    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_for_ranks(store, rank: int, world: int, deadline: float, limit: float) -> None:
    """Every rank checks in; each waits (in short steps) until all have, or names the missing ones."""
    import time

    store.set(f"truthprune/rank{rank}", "1")
    while True:
        missing = [r for r in range(world) if not store.check([f"truthprune/rank{r}"])]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise UserError(f"rank {rank} of {world}: rank(s) {', '.join(map(str, missing))} did not start within {limit:g} s; "
                            f"start every rank (torchrun --nproc-per-node {world} ...) or set TRUTHPRUNE_DIST_TIMEOUT")
        time.sleep(0.2)


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
    store = rendezvous(world)
    dist.init_process_group(backend=backend, store=store, rank=int(os.environ["RANK"]), world_size=world)
    dp = data_parallel()
    log.info("data parallel: rank %d of %d (%s)", dp.rank, dp.world, backend)
    return dp, device

"""``truthprune prune --nproc N``: start N data-parallel workers with clean output.

Why not only ``torchrun``: torchrun works (every rank computes its share of the calibration
batches, rank 0 writes and speaks), but when a worker exits with an error torchrun adds its own
summary, a ChildFailedError traceback of about 40 lines, and exits 1 instead of the worker's
code. That summary is printed by the launcher process, so nothing inside truthprune can silence
it. ``--nproc N`` starts the same workers through torch's elastic launch API
(``torch.distributed.launcher.api.elastic_launch``, what torchrun itself calls) from inside
truthprune, with the launcher's logging switched off: an error is the one line rank 0 prints,
and the exit code is the worker's (2 for a bad input).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from ..errors import UserError

ARGV: list[str] = []  # the arguments of this invocation, set by main(); prune --nproc hands them to its workers


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (what each worker runs)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def check_nproc(nproc: int) -> None:
    if nproc < 1:
        raise UserError(f"--nproc {nproc} must be at least 1")
    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UserError("--nproc starts its own worker processes; drop it when running under torchrun "
                        "(or drop torchrun and keep --nproc)")
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch without distributed support
        dist = None
    if nproc > 1 and (dist is None or not dist.is_available()):
        raise UserError("--nproc needs torch.distributed, which this torch build lacks; drop --nproc")


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m truthprune ARGV`` in ``nproc`` workers (one machine, gloo/nccl chosen by the
    workers); return the exit code of the first worker that failed, else 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # their start/stop chatter and failure summary
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "truthprune", *argv)
    except ChildFailedError as err:
        _, failure = err.get_first_failure()
        code = getattr(failure, "exitcode", 1)
        return code if isinstance(code, int) and code > 0 else 1
    return 0


__all__ = ["launch", "check_nproc", "strip_nproc"]

"""Data-parallel pruning under torchrun (gloo, 2 CPU processes) matches a one-process run.

The worker (tests/dist_prune_worker.py) prunes the tiny Llama with Wanda after a dense pre-pass
(a recording allocator), and in offload mode; and with a pruner that asks for the dense-target
``cross`` statistic, in memory and offloaded with --bias-correction. Masks, allocations, the
pre-pass observations, the dense-target statistics and the offload checkpoints must equal those
of the same code run in one process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("dist_prune_worker.py")


def _worker():
    spec = importlib.util.spec_from_file_location("dist_prune_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _single_process(out: Path) -> dict:
    threads = torch.get_num_threads()
    try:
        return _worker().run(out)
    finally:
        torch.set_num_threads(threads)


def test_torchrun_two_ranks_match_one_process(tmp_path):
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    dist_out = tmp_path / "dist"
    dist_out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), str(dist_out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = torch.load(dist_out / "result.pt")
    assert dist["world"] == 2

    single_out = tmp_path / "single"
    single_out.mkdir()
    single = _single_process(single_out)
    assert single["world"] == 1

    assert dist["allocation"] == single["allocation"]
    assert len(set(dist["allocation"])) == 3  # the allocator really used the observations
    assert dist["tokens"] == single["tokens"] and dist["tokens"][0]["self_attn.q_proj"] == 10 * 48 - 7
    for i in single["observed"]:
        for name, v in single["observed"][i].items():
            assert torch.equal(dist["observed"][i][name], v), (i, name)
    assert all(torch.equal(a, b) for a, b in zip(dist["masks"], single["masks"]))

    from safetensors.torch import load_file

    def tensors(d: Path) -> dict:
        out = {}
        for f in sorted(d.glob("*.safetensors")):
            out.update(load_file(f))
        return out

    for name in ("offload", "offload-dense"):
        a, b = tensors(dist_out / name), tensors(single_out / name)
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a), name
    assert any(k.endswith("q_proj.bias") for k in a)  # the bias-corrected checkpoint
    for mode in ("dense_memory", "dense_offload"):
        assert len(dist[mode]) == len(single[mode]) == 3 * 7
        for got, want in zip(dist[mode], single[mode]):
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), mode

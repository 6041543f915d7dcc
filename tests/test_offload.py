"""Offload mode (weights on disk, one layer in memory), the memory estimate and its refusal,
memory-mapped activations, the engine's work-skipping statistics pass, and --device cuda
without a GPU."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from truthprune import CalibrationSamples, LayerInfo, SparsityAllocator, UserError, get_registry, prune_model
from truthprune.pruning.engine import memory as mem
from truthprune.pruning.engine import offload as off
from truthprune.pruning.engine.offload import prune_checkpoint
from truthprune.models.adapter import decoder_layers, prunable_linears


def _objs(allocator="uniform"):
    reg = get_registry()
    return reg.create("pruner", "wanda"), reg.create("allocator", allocator)


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


class _DenseRecorder(SparsityAllocator):
    name = "dense-recorder-test"
    needs_dense_pass = True
    required_stats = frozenset({"sq_norm"})

    def __init__(self, options=None):
        super().__init__(options)
        self.seen = {}

    def observe_layer(self, index, weights, stats):
        self.seen[index] = {n: s.sq_norm.clone() for n, s in stats.items()}

    def allocate(self, target, info: LayerInfo):
        return [target - 0.2, target + 0.1, target + 0.1][: info.num_layers]


@pytest.fixture
def saved(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "src")
    return tmp_path / "src"


def test_offload_equals_in_memory_and_reloads(tiny_llama, tiny_calibration, saved, tmp_path):
    ref = copy.deepcopy(tiny_llama)
    prune_model(ref, tiny_calibration, *_objs(), 0.5, batch_size=3, quiet=True)
    report = prune_checkpoint(str(saved), tmp_path / "out", tiny_calibration, *_objs(), 0.5, batch_size=3, quiet=True,
                              metadata={"seed": 7})
    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == len(list(out.glob("model-*.safetensors"))) == 4
    assert (out / "config.json").is_file() and json.loads((out / "truthprune.json").read_text())["seed"] == 7
    pruned = _load(out)
    assert set(pruned.state_dict()) == set(ref.state_dict())
    assert all(torch.equal(pruned.state_dict()[k], v) for k, v in ref.state_dict().items())
    ids = tiny_calibration.input_ids[:2]
    with torch.no_grad():
        assert torch.equal(pruned(ids).logits, ref(ids).logits)
    assert report.overall == pytest.approx(0.5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_offload_dense_pass_and_padding_match_in_memory(tiny_llama, tiny_calibration, saved, tmp_path):
    mask = tiny_calibration.attention_mask.clone()
    mask[1, :9] = 0
    calib = CalibrationSamples(tiny_calibration.input_ids, mask)
    ref, rec_ref, rec_off = copy.deepcopy(tiny_llama), _DenseRecorder(), _DenseRecorder()
    prune_model(ref, calib, _objs()[0], rec_ref, 0.5, batch_size=4, quiet=True)
    prune_checkpoint(str(saved), tmp_path / "out", calib, _objs()[0], rec_off, 0.5, batch_size=4, quiet=True,
                     activations_dir=str(tmp_path))
    for i, stats in rec_ref.seen.items():
        assert all(torch.equal(rec_off.seen[i][n], v) for n, v in stats.items())
    pruned = _load(tmp_path / "out")
    assert all(torch.equal(pruned.state_dict()[k], v) for k, v in ref.state_dict().items())
    assert not list(tmp_path.glob("acts-*"))  # mapped activation files are unlinked at once


def test_only_one_layer_is_materialised_at_a_time(tiny_calibration, saved, tmp_path, monkeypatch):
    seen = []
    orig_open = off.OffloadedLayers.open

    def spy(self, index):
        layer = orig_open(self, index)
        real = [i for i, lay in enumerate(self.layers) if any(p.device.type != "meta" for p in lay.parameters())]
        seen.append(real)
        return layer

    monkeypatch.setattr(off.OffloadedLayers, "open", spy)
    prune_checkpoint(str(saved), tmp_path / "out", tiny_calibration, *_objs("owl"), 0.5, batch_size=4, quiet=True)
    assert seen == [[0], [1], [2], [0], [1], [2]]  # dense pre-pass, then the pruning pass


def test_bf16_checkpoint_keeps_its_dtype(tiny_llama, tiny_calibration, tmp_path):
    tiny_llama.to(torch.bfloat16).save_pretrained(tmp_path / "src")
    prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, *_objs(), 0.5, batch_size=4, quiet=True)
    pruned = _load(tmp_path / "out")
    q = pruned.model.layers[0].self_attn.q_proj.weight
    assert q.dtype == torch.bfloat16 and (q == 0).float().mean().item() == pytest.approx(0.5)


def test_offload_needs_a_safetensors_checkpoint(tiny_calibration, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="safetensors"):
        prune_checkpoint(str(tmp_path / "src"), tmp_path / "out", tiny_calibration, *_objs(), 0.5, quiet=True)


def test_existing_output_is_refused_before_work(tiny_calibration, saved, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="already exists"):
        prune_checkpoint(str(saved), tmp_path / "out", tiny_calibration, *_objs(), 0.5, quiet=True)


# ----------------------------------------------------------------------------- memory estimate

_SHAPE = mem.ModelShape(hidden=4, intermediate=8, layers=2, heads=2, vocab=10, layer_params=100, total_params=300)


def test_estimate_hand_worked():
    est = mem.estimate_memory(_SHAPE, nsamples=3, seqlen=5, batch_size=2)
    assert est.activations == 2 * 3 * 5 * 4 * 4  # inputs + outputs, float32
    assert est.working == 2 * 5 * (6 * 4 + 3 * 8) * 4 + 2 * 2 * 5 * 5 * 4
    assert est.weights == 300 * 4 and est.offload_weights == max(2 * 100 * 4, 10 * 4 * 4)
    assert mem.estimate_memory(_SHAPE, 3, 5, 2, offload=True).weights == 800
    assert mem.estimate_memory(_SHAPE, 4, 5, 2, world=2).activations == 2 * 2 * 5 * 4 * 4
    assert mem.estimate_memory(_SHAPE, 3, 5, 2, padded=True).activations == 480 + 3 * 25


def test_refusal_names_the_fix():
    est = mem.estimate_memory(_SHAPE, nsamples=3, seqlen=5, batch_size=2)  # 480 + 2320 + weights 1200
    assert "calibration needs" in mem.check_memory(est, 10_000, offload=False)
    with pytest.raises(UserError, match="--offload"):
        mem.check_memory(est, 480 + 2320 + 800, offload=False)
    with pytest.raises(UserError, match="--nsamples"):
        mem.check_memory(est, 480 + 2320 + 799, offload=False)
    with pytest.raises(UserError, match="--nsamples"):
        mem.check_memory(est, 2000, offload=False, weights_resident=True)


def test_prune_refuses_before_starting(tiny_llama, tiny_calibration, saved, tmp_path, monkeypatch):
    import truthprune.pruning.engine.sequential as seq

    before = copy.deepcopy(tiny_llama.state_dict())
    monkeypatch.setattr(seq, "available_memory", lambda: 1000)
    with pytest.raises(UserError, match="calibration needs .* GB"):
        prune_model(tiny_llama, tiny_calibration, *_objs(), 0.5, quiet=True)
    assert all(torch.equal(before[k], v) for k, v in tiny_llama.state_dict().items())
    monkeypatch.setattr(off, "available_memory", lambda: 1000)
    with pytest.raises(UserError, match="--nsamples"):
        prune_checkpoint(str(saved), tmp_path / "out", tiny_calibration, *_objs(), 0.5, quiet=True)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- statistics pass


def test_statistics_pass_skips_work_without_changing_statistics(tiny_llama, tiny_calibration):
    """Early stop + shared inputs give the statistics of a plain full pass with forward hooks."""
    from truthprune.pruning.engine.capture import capture_layer0_inputs
    from truthprune.pruning.engine.sequential import EngineSetup, _statistics

    layers = decoder_layers(tiny_llama)
    batches = capture_layer0_inputs(tiny_llama, layers, tiny_calibration.input_ids, tiny_calibration.attention_mask, 4)
    layer = layers[1]
    linears = prunable_linears(layer)
    plain = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in linears.items()}
    down_calls = []

    def hook(name):
        def f(module, inputs, output):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).float()
            plain[name] += (x * x).sum(0)
            if name == "mlp.down_proj":
                down_calls.append(1)
        return f

    with torch.no_grad():
        handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
        for b in batches:
            layer(b.hidden, **b.kwargs)
        for h in handles:
            h.remove()
    assert len(down_calls) == 2
    down_calls.clear()
    handle = linears["mlp.down_proj"].register_forward_hook(lambda *a: down_calls.append(1))
    with torch.inference_mode():
        _, collector, outs = _statistics(layer, batches, EngineSetup(device=torch.device("cpu")), frozenset({"sq_norm"}), keep=False)
    handle.remove()
    assert outs == [] and collector.early_stop
    assert len(down_calls) == 1  # the first batch runs fully (to see each linear runs once), the second stops early
    for name, st in collector.stats.items():
        assert st.n_tokens == 8 * 64
        assert torch.allclose(st.sq_norm.double(), plain[name], rtol=1e-6)


# ----------------------------------------------------------------------------- device


def test_device_cuda_without_gpu_exits_2(tmp_path):
    from truthprune.models.loading import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no CUDA GPU"):
        resolve_device("cuda")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-m", "truthprune", "run", "--device", "cuda", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "no CUDA GPU" in out.stderr and "--device cpu" in out.stderr and "Traceback" not in out.stderr


def test_check_before_loading_suggests_offload(saved, monkeypatch):
    from truthprune import check_prune_memory

    assert "calibration needs" in check_prune_memory(str(saved), nsamples=8, seqlen=64)
    # in memory the tiny model's ~0.1 MB of weights do not fit; with --offload they would
    est = mem.estimate_memory(mem.ModelShape.from_config(_load(saved).config), 8, 64, 8)
    monkeypatch.setattr(mem, "available_memory", lambda: est.activations + est.working + est.offload_weights)
    with pytest.raises(UserError, match="--offload"):
        check_prune_memory(str(saved), nsamples=8, seqlen=64)
    assert "offload" in check_prune_memory(str(saved), nsamples=8, seqlen=64, offload=True)


def test_streaming_safetensors_writer_roundtrips_every_dtype(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from truthprune.pruning.engine.checkpoint import write_safetensors

    tensors = {
        "w": torch.randn(3, 4), "half": torch.randn(5).half(), "bf": torch.randn(2, 2).bfloat16(),
        "scalar": torch.tensor(7), "empty": torch.zeros(0), "flags": torch.tensor([True, False]),
        "strided": torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),  # non-contiguous input
    }
    path = tmp_path / "x.safetensors"
    write_safetensors(path, tensors, {"format": "pt"})
    back = load_file(path)
    assert sorted(back) == sorted(tensors)
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in tensors.items())
    with safe_open(path, framework="pt") as fh:
        assert fh.metadata() == {"format": "pt"}

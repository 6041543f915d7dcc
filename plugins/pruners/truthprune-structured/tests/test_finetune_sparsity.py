"""finetune on an unstructured or N:M pruned model keeps every pruned weight at exactly 0 (``--keep-sparsity``
merge and adapter), checked by ``truthprune inspect``; ``off`` lets LoRA fill them in."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from truthprune.reporting.inspect_model import inspect_checkpoint


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """{"0.5": dir, "2:4": dir}: the tiny model pruned by wanda through the CLI."""
    import random

    from truthprune.cli.main import main
    from truthprune.testing import save_tiny_checkpoint

    root = tmp_path_factory.mktemp("ft_sparse")
    tiny = save_tiny_checkpoint(root / "tiny", seed=0, layers=3)
    rng = random.Random(0)
    words = ["truth", "prune", "model", "layer", "the", "a", "of", "and", "heads", "channel", "entropy", "loss"]
    (root / "text.txt").write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(60)) for _ in range(40)))
    out = {}
    for tag, flags in (("0.5", ["--sparsity", "0.5"]), ("2:4", ["--nm", "2:4"])):
        try:
            main(["prune", "--model", str(tiny), "--pruner", "wanda", *flags, "--calibration", "text", "--calibration-opt",
                  f"path={root / 'text.txt'}", "--nsamples", "4", "--seqlen", "32", "--device", "cpu", "--quiet",
                  "--save", str(root / tag.replace(":", "-"))])
        except SystemExit as exc:
            assert not exc.code
        out[tag] = root / tag.replace(":", "-")
    out["text"] = root / "text.txt"
    return out


def _finetune(cli, model, text, save, mode):
    code, _, err = cli("finetune", "--model", str(model), "--save", str(save), "--calibration", "text", "--calibration-opt",
                       f"path={text}", "--nsamples", "8", "--seqlen", "32", "--steps", "4", "--lr", "1e-2", "--rank", "4",
                       "--batch-size", "2", "--device", "cpu", "--quiet", "--keep-sparsity", mode)
    assert code == 0, err[-2000:]
    return save


@pytest.mark.parametrize("mode", ["merge", "adapter"])
@pytest.mark.parametrize("tag", ["0.5", "2:4"])
def test_finetune_keeps_the_zeros_and_the_pattern(pruned, tmp_path, cli, mode, tag):
    src = pruned[tag]
    out = _finetune(cli, src, pruned["text"], tmp_path / "ft", mode)
    before, after = inspect_checkpoint(src), inspect_checkpoint(out)
    assert after["warnings"] == [] and before["warnings"] == []
    assert [r["sparsity"] for r in after["layers"]] == [r["sparsity"] for r in before["layers"]]
    assert [r["recorded"] for r in after["layers"]] == [r["recorded"] for r in before["layers"]]  # the record travels
    if tag == "2:4":
        assert after["nm_recorded"] and all(r["nm_valid"] for r in after["layers"])
    a, b = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    linears = [k for k in a if ".layers." in k and a[k].dim() == 2]
    assert all(torch.equal(a[k] == 0, b[k] == 0) for k in linears)  # the same weights are zero, exactly
    assert any(not torch.equal(a[k], b[k]) for k in linears)  # and the others were trained


def test_keep_sparsity_off_fills_the_zeros(pruned, tmp_path, cli):
    out = _finetune(cli, pruned["2:4"], pruned["text"], tmp_path / "ft", "off")
    info = inspect_checkpoint(out)
    assert info["overall_sparsity"] < 0.01 and not any(r["nm_valid"] for r in info["layers"])


def test_inspect_warns_when_a_mask_is_lost(pruned, tmp_path, cli):
    import shutil

    from safetensors.torch import save_file

    broken = tmp_path / "broken"
    shutil.copytree(pruned["2:4"], broken)
    tensors = load_file(broken / "model.safetensors")
    key = next(k for k in tensors if k.endswith("layers.1.mlp.down_proj.weight"))
    tensors[key] = tensors[key].masked_fill(tensors[key] == 0, 1e-3)
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    info = inspect_checkpoint(broken)
    assert any("layer 1" in w and "filled in" in w for w in info["warnings"])
    assert any("2:4 pattern" in w for w in info["warnings"])
    code, out, err = cli("inspect", str(broken), "--strict")
    assert code == 1 and "warning: layer 1" in err
    code, out, err = cli("inspect", str(pruned["2:4"]), "--strict")
    assert code == 0 and "2:4 pattern (recorded): holds in 3 of 3 layers" in out


def test_finetune_of_a_compressed_tensors_checkpoint_keeps_its_zeros(pruned, tmp_path, cli):
    """Reload path: the packed model is loaded through transformers, recovered, saved plain; no zero is lost."""
    pytest.importorskip("compressed_tensors")
    src = tmp_path / "ct"
    code, _, err = cli("prune", "--model", str(pruned["2:4"]), "--pruner", "magnitude", "--sparsity", "0", "--quantizer", "rtn",
                       "--bits", "4", "--group-size", "16", "--format", "compressed-tensors", "--save", str(src),
                       "--calibration", "text", "--calibration-opt", f"path={pruned['text']}", "--nsamples", "4",
                       "--seqlen", "32", "--device", "cpu", "--quiet")
    assert code == 0, err[-2000:]
    before = inspect_checkpoint(src)
    assert before["quantization"]["bits"] == 4 and all(r["nm_valid"] for r in before["layers"])
    out = _finetune(cli, src, pruned["text"], tmp_path / "ft", "merge")
    after = inspect_checkpoint(out)
    assert after["warnings"] == [] and after["quantization"] is None
    assert [r["sparsity"] for r in after["layers"]] == [r["sparsity"] for r in before["layers"]]
    assert all(r["nm_valid"] for r in after["layers"])

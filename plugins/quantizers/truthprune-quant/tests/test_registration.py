"""The plugin registers both quantizers under its own distribution, with validated options, and
its registration module stays torch-free (``truthprune plugins`` imports it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from truthprune import STAT_GRAM, UserError, get_registry
from truthprune_quant import GptqQuantizer, RtnQuantizer


def test_registered_with_distribution_and_needs():
    reg = get_registry()
    assert reg.get("quantizer", "rtn") is RtnQuantizer and reg.get("quantizer", "gptq") is GptqQuantizer
    assert {reg.entry("quantizer", n).distribution for n in ("rtn", "gptq")} == {"truthprune-quant"}
    assert RtnQuantizer.required_stats == frozenset() and GptqQuantizer.required_stats == {STAT_GRAM}
    desc = reg.create("quantizer", "gptq", {"bits": 3}).describe()
    assert desc["method"] == "gptq" and desc["bits"] == 3 and desc["group_size"] == 128 and desc["percdamp"] == 0.01


@pytest.mark.parametrize("opts,field", [({"bits": 1}, "bits"), ({"group_size": -1}, "group_size"), ({"bitz": 4}, "bitz"),
                                        ({"percdamp": 0}, "percdamp")])
def test_bad_options_name_the_field(opts, field):
    with pytest.raises(UserError, match=field):
        get_registry().create("quantizer", "gptq", opts)


def test_registration_module_does_not_import_torch():
    code = "import sys, truthprune_quant.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_gptq_without_statistics_is_a_clear_error():
    import torch

    from truthprune import LinearStats

    with pytest.raises(UserError, match="gram"):
        GptqQuantizer().quantize(torch.ones(2, 2), LinearStats(n_tokens=0), torch.zeros(2, 2, dtype=torch.bool))

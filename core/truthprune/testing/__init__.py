"""The plugin author kit: fixtures and contract tests a plugin runs against itself.

Use it from the plugin's own tests (the kit imports torch/transformers only when called)::

    from truthprune.testing import check_plugin, check_pruner

    def test_contract():
        check_plugin("random")          # by registered name: every kind + torch-free registration import
        check_pruner(RandomPruner)      # or one class, with options: check_pruner(cls, {"seed": 1})

or from a shell, for installed plugins: ``python -m truthprune.testing random wanda``.

Fixtures: :func:`tiny_llama`, :class:`TinyTokenizer`, :func:`tiny_calibration`,
:func:`fake_linear_stats`, :func:`probe_data`. See docs/plugins.md ("Test your plugin").
"""

from __future__ import annotations

from .checks import (
    ContractFailure,
    check_allocator,
    check_calibration_source,
    check_class,
    check_plugin,
    check_probe,
    check_pruner,
    check_quantizer,
    check_structured_pruner,
    check_torch_free_import,
    probe_data,
)
from .fixtures import TinyTokenizer, fake_linear_stats, save_tiny_checkpoint, tiny_calibration, tiny_llama

__all__ = [
    "ContractFailure", "TinyTokenizer", "check_allocator", "check_calibration_source", "check_class", "check_plugin",
    "check_probe", "check_pruner", "check_quantizer", "check_structured_pruner", "check_torch_free_import", "fake_linear_stats",
    "probe_data", "save_tiny_checkpoint", "tiny_calibration", "tiny_llama",
]

"""Core names no first-party plugin: no string literal in core/truthprune equals a name a plugin
distribution registers (or a plugin's constant), except the allow-listed uses below.

Why: whatever a command needs from a plugin must come through the interface (e.g. an allocator
declares its shortcut flags, stats-file keys and per-layer signals: ``option_flags``,
``file_options``, ``layer_signals``), so a third-party allocator gets the same treatment and
uninstalling a plugin never leaves dead code paths in core. Help texts and docstrings may mention
plugins (they are longer strings, never an exact match).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core" / "truthprune"
CONSTANTS = {"outlier_ratio_percent"}  # truthprune-owl's OUTLIER_EXTRA

_EVAL_TEXT = "core's own perplexity texts (eval/perplexity.py: pydoc_topics, wikitext_rows), not the calibration plugins"
_STRUCTURED = "the StructuredPruner.structured attribute, read in the one place that tells the kinds apart, not the plugin"
_GENERATED = "core's offline generated statement sets (truth/generate.py), not the calibration source"
# The run's defaults (wanda, logreg, pydoc) are core built-ins (truthprune.builtins), so they are
# core's own names and need no entry here (docs/architecture.md, "Core runs on its own").
ALLOWED = {
    ("eval/perplexity.py", "wikitext2"): _EVAL_TEXT,
    ("run/checks.py", "wikitext2"): _EVAL_TEXT + "; the plan-time check reads that text now when the hub is offline",
    ("run/kinds.py", "structured"): _STRUCTURED,
    ("run/pipeline.py", "generated"): _GENERATED,
}


def first_party_names() -> set[str]:
    names = set()
    for f in REPO.glob("plugins/*/*/src/**/*.py"):
        names |= set(re.findall(r'^\s+name = "([A-Za-z0-9_.-]+)"', f.read_text(encoding="utf-8"), re.M))
    return names


def literal_uses(names: set[str]) -> set[tuple[str, str]]:
    found = set()
    for f in sorted(CORE.rglob("*.py")):
        for tok in tokenize.generate_tokens(io.StringIO(f.read_text(encoding="utf-8")).readline):
            if tok.type != tokenize.STRING or tok.string[:1] in "fFbB" or tok.string[:2].lower() in ("rf", "fr", "rb", "br"):
                continue
            try:
                value = eval(tok.string)  # a plain literal: its value
            except Exception:  # noqa: BLE001
                continue
            if isinstance(value, str) and value in names:
                found.add((f.relative_to(CORE).as_posix(), value))
    return found


def test_core_has_no_first_party_plugin_names_or_constants():
    names = first_party_names()
    if not names:
        pytest.skip("no plugins/ tree next to core (a core-only checkout)")
    assert {"owl", "tplo", "swl", "sparsegpt", "ttpd"} <= names  # the scan sees the plugins
    unexpected = literal_uses(names | CONSTANTS) - set(ALLOWED)
    assert not unexpected, (
        f"core names first-party plugins: {sorted(unexpected)}; declare what the command needs on the plugin "
        "interface instead (or add an allow-list entry with the reason)"
    )


def test_allow_list_has_no_stale_entries():
    names = first_party_names()
    if not names:
        pytest.skip("no plugins/ tree next to core")
    stale = set(ALLOWED) - literal_uses(names | CONSTANTS)
    assert not stale, f"allow-list entries no longer needed: {sorted(stale)}"

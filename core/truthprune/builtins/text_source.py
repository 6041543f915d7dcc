"""Built-in calibration sources: ``text`` (a local .txt, .jsonl with a text field, .parquet) and
``pydoc`` (core's default: the calibration half of Python's reference manual, shipped with CPython,
so core alone runs ``truthprune run`` offline; docs/architecture.md, "Core runs on its own").

``RecordsConfig`` is the options every record source shares (``format``: concat or single,
``padding_side``); :func:`truthprune.calibration.windows.formatted_records` applies them.
"""

from __future__ import annotations

from typing import Literal

from truthprune.plugin.interfaces import CalibrationSource, PluginConfig


class RecordsConfig(PluginConfig):
    format: Literal["concat", "single"] = "concat"
    """concat: random records joined past seqlen, then a random window; single: one record per sample, padded."""
    padding_side: Literal["left", "right"] = "left"
    """Where ``single`` pads a record shorter than seqlen."""


class TextFileConfig(RecordsConfig):
    path: str | None = None
    field: str = "text"
    split: Literal["empty-lines", "blank-lines"] = "empty-lines"
    """.txt only: records are separated by empty lines; blank-lines: whitespace-only lines separate them too."""


class TextFileSource(CalibrationSource):
    name = "text"
    description = "Local text file: .txt (blank-line separated records), .jsonl ('text' field) or .parquet."
    Config = TextFileConfig

    def _records(self) -> list[str]:
        from truthprune.calibration.windows import read_text_records
        from truthprune.errors import UserError

        if not self.config.path:
            raise UserError("calibration source 'text' needs a file: pass --calibration-opt path=FILE")
        if getattr(self, "_cached", None) is None:
            self._cached = read_text_records(self.config.path, self.config.field, self.config.split)
        return self._cached

    def check(self) -> None:
        """Read the file up front (kept for samples()): missing, empty or field-less files fail fast."""
        self._records()

    def samples(self, tokenizer, nsamples, seqlen, seed):
        from truthprune.calibration.windows import formatted_records

        cfg = self.config
        return formatted_records(self._records(), tokenizer, nsamples, seqlen, seed, cfg.format, cfg.padding_side, name="text")


class PydocSource(CalibrationSource):
    name = "pydoc"
    description = "Python reference-manual prose shipped with CPython (pydoc_data), calibration half of the topics."
    Config = RecordsConfig

    def samples(self, tokenizer, nsamples, seqlen, seed):
        from truthprune.calibration.windows import formatted_records
        from truthprune.eval.perplexity import pydoc_topics

        # The other half ('heldout') is the `pydoc` perplexity text: never calibrate on it.
        cfg = self.config
        return formatted_records(pydoc_topics("calibration"), tokenizer, nsamples, seqlen, seed, cfg.format,
                                 cfg.padding_side, name="pydoc")

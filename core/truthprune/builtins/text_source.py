"""Built-in calibration source: a local text file (.txt, .jsonl with a text field, .parquet)."""

from __future__ import annotations

from typing import Literal

from truthprune.plugin.interfaces import CalibrationSource, PluginConfig


class TextFileConfig(PluginConfig):
    path: str | None = None
    field: str = "text"
    format: Literal["concat", "single"] = "concat"
    padding_side: Literal["left", "right"] = "left"


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
            self._cached = read_text_records(self.config.path, self.config.field)
        return self._cached

    def check(self) -> None:
        """Read the file up front (kept for samples()): missing, empty or field-less files fail fast."""
        self._records()

    def samples(self, tokenizer, nsamples, seqlen, seed):
        from truthprune.calibration.windows import padded_records, record_windows

        records = self._records()
        if self.config.format == "single":
            return padded_records(records, tokenizer, nsamples, seqlen, seed, self.config.padding_side, name="text")
        return record_windows(records, tokenizer, nsamples, seqlen, seed, name="text")

"""Built-in calibration source: a local text file (.txt, .jsonl with a text field, .parquet)."""

from __future__ import annotations

from typing import Literal

from truthprune.interfaces import CalibrationSource, PluginConfig


class TextFileConfig(PluginConfig):
    path: str | None = None
    field: str = "text"
    format: Literal["concat", "single"] = "concat"
    padding_side: Literal["left", "right"] = "left"


class TextFileSource(CalibrationSource):
    name = "text"
    description = "Local text file: .txt (blank-line separated records), .jsonl ('text' field) or .parquet."
    Config = TextFileConfig

    def samples(self, tokenizer, nsamples, seqlen, seed):
        from truthprune.calibration import padded_records, read_text_records, record_windows
        from truthprune.errors import UserError

        if not self.config.path:
            raise UserError("calibration source 'text' needs a file: pass --calibration-opt path=FILE")
        records = read_text_records(self.config.path, self.config.field)
        if self.config.format == "single":
            return padded_records(records, tokenizer, nsamples, seqlen, seed, self.config.padding_side, name="text")
        return record_windows(records, tokenizer, nsamples, seqlen, seed, name="text")

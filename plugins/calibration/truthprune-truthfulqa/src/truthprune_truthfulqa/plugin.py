"""Registration and the thin ``enriched-truthfulqa`` and ``truth-statements`` sources.

Both default to the reference's windowing for truth data (REFERENCE.md 3.3/3.4): records drawn
at random and concatenated (each with its own BOS where the tokenizer adds one) until longer than
seqlen, then a random window (``truthprune.record_windows``). ``format=single`` pads one record
per sample instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from truthprune import CalibrationSource, PluginConfig, hookimpl


class _RecordConfig(PluginConfig):
    format: Literal["concat", "single"] = "concat"
    padding_side: Literal["left", "right"] = "left"


def _windows(records, tokenizer, nsamples, seqlen, seed, config, name):
    from truthprune import padded_records, record_windows

    if config.format == "single":
        return padded_records(records, tokenizer, nsamples, seqlen, seed, config.padding_side, name=name)
    return record_windows(records, tokenizer, nsamples, seqlen, seed, name=name)


class EnrichedTruthfulQAConfig(_RecordConfig):
    path: str | None = None
    """The original TruthfulQA.csv; None reads truthfulqa/truthful_qa from the hub."""
    split_seed: int = 0
    """Seed of truthprune.truthfulqa_split; keep it equal to the evaluation's (default 0 both)."""


class EnrichedTruthfulQASource(CalibrationSource):
    name = "enriched-truthfulqa"
    description = "TruthfulQA answers with a true/false clarification (reconstructed enrichment), calibration half of the questions only."
    Config = EnrichedTruthfulQAConfig

    def check(self) -> None:
        """A local TruthfulQA.csv is read now, so a bad file fails before the model loads."""
        if self.config.path not in (None, "hub"):
            self.records()

    def records(self) -> list[str]:
        """The enriched records of the calibration half (the evaluation half is never read)."""
        if getattr(self, "_records", None) is not None:
            return self._records
        from truthprune import load_truthfulqa, truthfulqa_split

        from .records import enriched_records

        items, _ = load_truthfulqa(self.config.path, fix="pass --calibration-opt path=FILE with the original TruthfulQA.csv")
        calib_idx, _ = truthfulqa_split(len(items), self.config.split_seed)
        self._records = enriched_records(items[i] for i in calib_idx)
        return self._records

    def samples(self, tokenizer, nsamples, seqlen, seed):
        return _windows(self.records(), tokenizer, nsamples, seqlen, seed, self.config, "enriched-truthfulqa")


class TruthStatementsConfig(_RecordConfig):
    path: str | None = None
    """Directory of Truth-is-Universal style CSVs (statement,label[,...])."""
    datasets: list[str] | None = None
    """File stems to use (a list, or 'a,b' on the command line); None: every CSV in the directory."""
    with_answer: bool = False
    """Append 'and the correct answer is indeed X' where the CSV names it (correct_country, true_target)."""

    @field_validator("datasets", mode="before")
    @classmethod
    def _split_commas(cls, v):
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v


class TruthStatementsSource(CalibrationSource):
    name = "truth-statements"
    description = "Labelled true/false statements ('<statement>, which is true.') from a directory of TiU CSVs."
    Config = TruthStatementsConfig

    def check(self) -> None:
        """The CSVs are read now, so a missing or bad file fails before the model loads."""
        self.records()

    def records(self) -> list[str]:
        from truthprune import UserError

        from .records import statement_files, statement_records

        if not self.config.path:
            raise UserError("calibration source 'truth-statements' needs a directory of CSVs: pass --calibration-opt path=DIR")
        if getattr(self, "_records", None) is None:
            self._records = statement_records(statement_files(self.config.path, self.config.datasets), self.config.with_answer)
        return self._records

    def samples(self, tokenizer, nsamples, seqlen, seed):
        return _windows(self.records(), tokenizer, nsamples, seqlen, seed, self.config, "truth-statements")


@hookimpl
def register_calibration_sources(register):
    register(EnrichedTruthfulQASource)
    register(TruthStatementsSource)

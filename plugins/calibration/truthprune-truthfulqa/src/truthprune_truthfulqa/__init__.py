"""Truth-centred calibration sources: ``enriched-truthfulqa`` and ``truth-statements``."""

from .plugin import EnrichedTruthfulQASource, TruthStatementsSource
from .records import enriched_record, enriched_records, labelled_statement

__all__ = ["EnrichedTruthfulQASource", "TruthStatementsSource", "enriched_record", "enriched_records", "labelled_statement"]

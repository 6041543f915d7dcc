"""truthprune-structured: structured pruning (entropy / taylor-ce / magnitude / wanda-sum unit
importances) and LoRA recovery (``truthprune finetune``)."""

from .plugin import StructuredImportancePruner, StructuredOptions

__all__ = ["StructuredImportancePruner", "StructuredOptions"]

"""The pydantic schema ``report``, ``compare`` and ``sweep`` validate a ``report.json`` with on read.

Why: report.json is a user-editable file. A hand-edited ``"sparsity": "0.5"`` or
``"layers": "oops"`` used to crash rendering with a TypeError deep inside a format string. Only
what the readers rely on is typed (strictly: a string is not a number here); everything else is
allowed through unchanged, so newer reports with extra sections still load.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UserError

Num = Optional[float]  # strict float: accepts JSON integers and floats (incl. NaN/Infinity), not strings


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, protected_namespaces=())


class Layer(_Open):
    target: float
    achieved: float


class Pruning(_Open):
    pruner: str
    allocator: str
    layers: list[Layer]
    overall: float
    allocation: Optional[list[Num]] = None
    diagnostics: Optional[dict[str, Any]] = None


class Config(_Open):
    model: str
    sparsity: float
    eval: list[str] = []
    lm_eval_tasks: list[str] = []
    seqlen: Optional[int] = None
    ppl_data: Optional[str] = None


class Calibration(_Open):
    sources: list[str]
    nsamples: int
    seqlen: int
    description: Optional[str] = None


class ModelInfo(_Open):
    spec: Optional[str] = None
    path: Optional[str] = None
    layers: Optional[int] = None
    dtype: Optional[str] = None


class Perplexity(_Open):
    ppl: Num = None
    windows: Optional[int] = None
    seqlen: Optional[int] = None
    tokens: Optional[int] = None
    scored_tokens: Optional[int] = None


class TruthfulQA(_Open):
    mc1: Num = None
    mc2: Num = None


class Estimate(_Open):
    value: Num = None
    ci: Optional[list[Num]] = None


class Retention(_Open):
    layer: Optional[int] = None
    seeds: Optional[int] = None
    dense_accuracy: Optional[Estimate] = None
    pruned_accuracy: Optional[Estimate] = None
    transfer_accuracy: Optional[Estimate] = None
    accuracy_change: Optional[Estimate] = None
    retention: Optional[Estimate] = None
    transfer_retention: Optional[Estimate] = None


class ProbeSummary(_Open):
    best_layer: Optional[int] = None
    retention: Optional[Retention] = None
    best_accuracy: Num = None
    mean_accuracy: Num = None
    cross_topic_accuracy: Num = None
    transfer_accuracy: Num = None
    description: Optional[str] = None


class LmEvalTask(_Open):
    results: Optional[dict[str, dict[str, Any]]] = None


class LmEval(_Open):
    tasks: Optional[dict[str, LmEvalTask]] = None
    skipped: Optional[Union[str, dict[str, str]]] = None
    limit: Optional[int] = None
    num_fewshot: Optional[int] = None


class Results(_Open):
    ppl: Optional[Perplexity] = None
    truthfulqa: Optional[TruthfulQA] = None
    probe: Optional[ProbeSummary] = None
    lm_eval: Optional[LmEval] = None


class Stage(_Open):
    stage: str
    seconds: float


class Report(_Open):
    truthprune_report: Literal[1]
    config: Config
    pruning: Pruning
    calibration: Calibration
    seed: int = 0
    model: Optional[ModelInfo] = None
    dense: Optional[Results] = None
    pruned: Optional[Results] = None
    stages: list[Stage] = []
    versions: dict[str, str] = {}
    plots: list[str] = []
    truth_profile: Optional[list[Num]] = None
    allocations: Optional[dict[str, list[Num]]] = None


def validate_report(data: Any, where: str) -> dict[str, Any]:
    """Return ``data`` unchanged when it matches :class:`Report`; else one UserError line."""
    try:
        Report.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "report"
        value = first.get("input")
        shown = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
        raise UserError(f"{where}: {loc} = {shown[:60]}: {first['msg'].lower()}; the file was edited or is damaged, "
                        "rerun the truthprune run that wrote it") from None
    return data

"""The truth-feature stages of ``truthprune run``: the truth-separation profile (for allocators
that ask for it) and the dense-vs-pruned probe evaluation.

Both read last-token activations of true/false statements, extracted once per (weights
fingerprint, statement set) and cached on disk, so the profile and the dense probe share one
extraction and a sweep extracts the dense model once.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("truthprune.run")

# The reference computes its truth profile on these four sets (REFERENCE.md section 7).
PROFILE_SETS = ("cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans")


def _sets(plan) -> tuple[list[Any], str]:
    """The statement sets of this run (loaded or generated once per plan)."""
    if "truth_sets" not in plan.cache:
        from .checks import planned_truth_sets
        from ..truth.probing.runner import load_truth_sets

        cfg = plan.config
        sets, description = planned_truth_sets(cfg) or load_truth_sets(cfg.truth_data, cfg.truth_datasets, seed=cfg.seed)
        if cfg.truth_data is None:
            log.warning("no --truth-data given: using the offline generated statement sets (docs/probes.md)")
        plan.cache["truth_sets"] = (sets, description)
    return plan.cache["truth_sets"]


def _acts(plan, loaded, fingerprint: str, sets) -> dict[str, np.ndarray]:
    from ..models.bos import resolve_bos
    from ..truth.probing.runner import extract_statement_sets

    cfg = plan.config
    return extract_statement_sets(
        loaded.model, loaded.tokenizer, sets, layers=None, fingerprint=fingerprint,
        batch_size=max(cfg.batch_size, 16), chat_template=cfg.chat_template, quiet=cfg.quiet,
        add_bos=resolve_bos(loaded.tokenizer, getattr(cfg, "bos", "auto")).statements,
    )


def truth_profile_stage(plan, loaded, fingerprint: str, results: dict[str, Any]) -> list[float]:
    """Normalised per-layer truth separation of the dense model (reference section 7, computed)."""
    from ..truth.probing.protocol import separation_profile

    sets, description = _sets(plan)
    chosen = [s for s in sets if s.name in PROFILE_SETS] or sets
    acts = _acts(plan, loaded, fingerprint, chosen)
    profile = separation_profile(chosen, acts)
    plan.cache["truth_profile_sets"] = [s.name for s in chosen]
    plan.cache["truth_profile_ratios"] = profile["ratio"]
    log.info("truth profile from %s (%s)", ", ".join(s.name for s in chosen), description)
    return [float(x) for x in profile["profile"]]


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    held = res["heldout"]
    gen = res["generalization"]["layers"]
    cross = next(iter(gen.values())) if gen else None
    ratios = res["separation"]["ratio"]
    n_layers = len(res["layers"])
    return {
        "layer_accuracy": held["mean"],
        "per_set_accuracy": held["accuracy"],
        "best_layer": res["best_layer"]["layer"],
        "best_accuracy": res["best_layer"]["accuracy"],
        "mean_accuracy": float(np.mean(held["mean"])),
        "cross_topic_accuracy": cross["mean"] if cross else None,
        "cross_topic_std": cross["std"] if cross else None,
        "cross_topic_layer": int(next(iter(gen))) if gen else None,
        "layer_separation": [float(np.mean([r[k] for r in ratios.values()])) for k in range(n_layers)],
        "separation_by_set": ratios,
    }


def probe_stage(plan, loaded, fingerprint: str, role: str, dense: dict[str, Any] | None) -> dict[str, Any]:
    """Dense: extract (and cache) activations. Pruned: run the protocol on both models side by side,
    with the dense probes also applied to the pruned activations (transfer), and fill in the dense
    summary from the same comparison so both use identical splits and seeds."""
    cfg = plan.config
    sets, description = _sets(plan)
    acts = _acts(plan, loaded, fingerprint, sets)
    if role == "dense":
        plan.cache["dense_acts"] = acts
        return {"pending": True}
    from ..truth.probing.protocol import compare_dense_pruned

    layers = list(range(next(iter(acts.values())).shape[0]))
    cmp = compare_dense_pruned(
        sets, plan.cache["dense_acts"], acts, layers, probe=cfg.probe, probe_options=cfg.probe_options, seed=cfg.seed
    )
    protocol = (
        f"{cfg.probe} probe on last-token residual activations of every layer; held-out accuracy on an "
        f"entity-grouped {int(cmp['dense']['test_fraction'] * 100)}% test split of each set "
        f"({', '.join(s.name for s in sets)}; {description}); cross-topic accuracy = leave one topic pair "
        f"out at the dense model's best layer; transfer = dense-trained probe applied to pruned activations."
    )
    dense_summary = {**_summary(cmp["dense"]), "description": protocol}
    if dense is not None:
        dense["probe"] = dense_summary
    best = dense_summary["best_layer"]
    pruned_summary = _summary(cmp["pruned"])
    pruned_summary.update(
        {
            "description": protocol,
            "layer_transfer_accuracy": cmp["transfer"]["mean"],
            "transfer_accuracy": cmp["transfer"]["mean"][layers.index(best)],
            "accuracy_at_dense_best_layer": pruned_summary["layer_accuracy"][layers.index(best)],
        }
    )
    dense_summary["transfer_accuracy"] = dense_summary["best_accuracy"]
    return pruned_summary

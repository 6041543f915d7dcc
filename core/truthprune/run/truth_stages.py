"""The truth-feature stages of ``truthprune run`` (each RunState -> RunState):

* ``dense-truth``: last-token activations of the true/false statements on the dense model;
* ``truth-profile``: the dense model's per-layer truth separation, for allocators that ask for it;
* ``truth-compare``: the same activations on the pruned model, and the probe protocol on both
  models side by side (dense probes also applied to the pruned activations: transfer).

Activations are extracted once per (weights fingerprint, statement set) and cached on disk, so the
profile and the dense probe share one extraction and a sweep extracts the dense model once.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .state import RunState, TruthProfile, TruthSets
from ..models.bos import resolve_bos

log = logging.getLogger("truthprune.run")

# The reference computes its truth profile on these four sets (REFERENCE.md section 7).
PROFILE_SETS = ("cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans")


def budgeted(config: Any, sets: list[Any], description: str) -> TruthSets:
    """The run's statement sets with the probes' budget applied (``--truth-max-per-set``): every
    topic keeps the same seeded, class-balanced rows (:func:`cap_statement_sets`)."""
    from ..truth.probing.runner import cap_statement_sets

    cap = int(getattr(config, "truth_max_per_set", 0) or 0)
    if not cap or all(len(s) <= cap for s in sets):
        return TruthSets(sets, description)
    capped, rows = cap_statement_sets(sets, cap, config.seed)
    return TruthSets(sets, description, probe_sets=capped, probe_rows=rows)


def with_truth_sets(state: RunState) -> RunState:
    """The state with the run's statement sets: those loaded at plan time, else loaded (or generated) now."""
    if state.truth_sets is not None:
        return state
    from ..truth.probing.runner import load_truth_sets

    cfg = state.plan.config
    sets = state.plan.truth_sets or budgeted(cfg, *load_truth_sets(cfg.truth_data, cfg.truth_datasets, seed=cfg.seed))
    if cfg.truth_data is None:
        log.info("no --truth-data given: using the offline generated statement sets (docs/probes.md)")
    return state.but(truth_sets=sets)


def _acts(state: RunState, sets) -> dict[str, np.ndarray]:
    from ..truth.probing.runner import extract_statement_sets

    cfg, loaded = state.plan.config, state.loaded
    return extract_statement_sets(
        loaded.model, loaded.tokenizer, sets, layers=None, fingerprint=loaded.fingerprint,
        token_budget=cfg.batch_size * cfg.seqlen, chat_template=cfg.chat_template, quiet=cfg.quiet,
        add_bos=resolve_bos(loaded.tokenizer, cfg.bos).statements,
    )


def profile_sets(sets: list[Any]) -> list[Any]:
    """The sets the truth profile is computed on: the four of the TPLO paper when present, else all."""
    return [s for s in sets if s.name in PROFILE_SETS] or list(sets)


def dense_truth(state: RunState) -> RunState:
    """Stage ``dense-truth``: the dense model's activations on every probed statement set, each
    statement extracted once. The probes read the budgeted sets; the truth profile the same ones
    (:func:`truth_profile` reuses these activations, so nothing is extracted twice)."""
    state = with_truth_sets(state)
    return state.but(dense_acts=_acts(state, state.truth_sets.probed))


def truth_profile(state: RunState) -> RunState:
    """Stage ``truth-profile``: normalised per-layer truth separation of the dense model (reference
    section 7), on the same (budgeted) statements the probes use: when the probes ran first their
    activations are reused. Under torchrun rank 0 computes it and broadcasts it, so every rank
    allocates alike."""
    from ..pruning.engine.distributed import data_parallel
    from ..truth.probing.protocol import separation_profile

    state = with_truth_sets(state)
    dp = data_parallel()
    profile = None
    if dp.is_writer:
        chosen = profile_sets(state.truth_sets.probed)
        have = state.dense_acts or {}
        acts = have if all(s.name in have for s in chosen) else _acts(state, chosen)
        values = separation_profile(chosen, acts)["profile"]
        profile = TruthProfile(values=[float(x) for x in values], sets=[s.name for s in chosen])
        log.info("truth profile from %s (%s)", ", ".join(profile.sets), state.truth_sets.description)
    if dp.active:
        import torch.distributed as dist

        box = [profile]
        dist.broadcast_object_list(box, src=0)
        profile = box[0]
    return state.but(truth_profile=profile)


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


def truth_compare(state: RunState) -> RunState:
    """Stage ``truth-compare``: the probe protocol on the dense and the pruned activations with
    identical splits and seeds; the dense summary and the pruned one (with transfer) go into the
    state's ``dense["probe"]`` and ``pruned["probe"]``."""
    from ..truth.probing.protocol import compare_dense_pruned, probe_factory
    from ..truth.probing.retention import layer_retention

    cfg = state.plan.config
    sets, description = state.truth_sets.probed, state.truth_sets.description
    acts = _acts(state, sets)
    layers = list(range(next(iter(acts.values())).shape[0]))
    cmp = compare_dense_pruned(sets, state.dense_acts, acts, layers, probe=cfg.probe, probe_options=cfg.probe_options,
                               seed=cfg.seed)
    cap = int(getattr(cfg, "truth_max_per_set", 0) or 0)
    sizes = ", ".join(f"{s.name} {len(s)}" for s in sets)
    budget = (f"at most {cap} statements per set, a seeded class-balanced sample ({sizes})" if state.truth_sets.probe_sets
              else f"every statement ({sizes})")
    protocol = (
        f"{cfg.probe} probe on last-token residual activations of every layer; held-out accuracy on an "
        f"entity-grouped {int(cmp['dense']['test_fraction'] * 100)}% test split of each set "
        f"({budget}; {description}); cross-topic accuracy = leave one topic pair "
        f"out at the dense model's best layer; transfer = dense-trained probe applied to pruned activations."
    )
    dense_summary = {**_summary(cmp["dense"]), "description": protocol}
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
    pruned_summary["retention"] = layer_retention(sets, state.dense_acts, acts, layers, best,
                                                  probe_factory(cfg.probe, cfg.probe_options), seed=cfg.seed)
    pruned_summary["statements_per_set"] = {s.name: len(s) for s in sets}
    return state.but(dense={**state.dense, "probe": dense_summary}, pruned={**state.pruned, "probe": pruned_summary})

"""``truthprune optishear search``: the resumable NSGA-III search over the meta metric and the
layer profile, written to one JSON file that the pruner (``--pruner-opt from=FILE``), the allocator
(``--allocator-opt from=FILE``) and ``truthprune allocate --allocator optishear --stats FILE`` read.

Everything a user can get wrong (target, N:M with a layer profile, span, budget, calibration
source, a state file of another search) fails before the model loads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from .results import SPARSITY_KEY
from .space import SearchSpace, check_span, decode, layer_sparsities


def _parse_nm(nm: str | None) -> tuple[int, int] | None:
    from truthprune import UserError

    if nm is None:
        return None
    try:
        n, m = (int(x) for x in nm.split(":"))
    except ValueError:
        raise UserError(f"--nm {nm!r} must look like N:M, e.g. 2:4") from None
    if not 0 < n < m:
        raise UserError(f"--nm {nm} needs 0 < N < M, e.g. 2:4")
    return n, m


def _sources(calibration: list[str], calibration_opt: list[str] | None) -> list[Any]:
    from truthprune import UserError, get_registry

    opts: dict[str, Any] = {}
    for pair in calibration_opt or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--calibration-opt {pair!r} must look like key=value, e.g. path=valid.txt")
        try:
            opts[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            opts[key.strip()] = value
    names = [x.strip() for item in calibration for x in item.split(",") if x.strip()]
    sources = [get_registry().create("calibration", n, opts) for n in names]
    for src in sources:
        src.check()
        if src.needs_model:
            raise UserError(f"calibration source {src.name!r} samples text from the model; choose a text source for the search")
    return sources


def plan(sparsity: float, nm: str | None, knots: int, span: float, population: int, trials: int, state: Path) -> tuple:
    """Checks that need no model: returns (target, nm tuple, knots)."""
    from truthprune import UserError

    nm_t = _parse_nm(nm)
    target = nm_t[0] / nm_t[1] if nm_t else sparsity
    if not 0.0 < target < 1.0:
        raise UserError(f"--sparsity {sparsity} must lie in (0, 1)")
    if nm_t and knots:
        knots = 0  # N:M is the same pattern in every layer: only the metric is searched
    check_span(target, span, knots)
    if population < 4:
        raise UserError(f"--population {population} is too small for NSGA-III; use 4 or more")
    if trials < population:
        raise UserError(f"--trials {trials} is fewer than one generation of --population {population}")
    if state.is_dir() or not state.parent.is_dir():
        raise UserError(f"--state {state} must be a file in an existing directory")
    return target, nm_t, knots


def add_search_command(app: Any) -> None:
    group = typer.Typer(help="OptiShear: evolutionary search of a pruning metric and layer sparsities.", no_args_is_help=True)
    app.add_typer(group, name="optishear")

    @group.command("search")
    def search(
        state: Path = typer.Option(..., "--state", help="JSON file of the search: created, or resumed when it exists."),
        model: str = typer.Option("smollm2-135m", help="Model spec (local dir, .gguf, hub id, or an embedded name)."),
        sparsity: float = typer.Option(0.5, "--sparsity", "-s", help="Target sparsity the search optimises for."),
        nm: Optional[str] = typer.Option(None, "--nm", help="N:M pattern (e.g. 2:4): searches the metric only."),
        population: int = typer.Option(8, help="NSGA-III population (candidates per generation)."),
        trials: int = typer.Option(40, help="Budget: candidates evaluated, rounded up to whole generations."),
        knots: int = typer.Option(4, help="Layer-profile control points (0: uniform sparsity, metric only)."),
        span: float = typer.Option(0.1, help="Largest offset of a control point from the target."),
        calibration: list[str] = typer.Option(["pydoc"], "--calibration", help="Calibration source(s) for the search."),
        calibration_opt: Optional[list[str]] = typer.Option(None, "--calibration-opt", help="Source option key=value, e.g. path=valid.txt."),
        nsamples: int = typer.Option(8, min=1, help="Calibration windows pruned with and scored on."),
        seqlen: int = typer.Option(256, min=8, help="Tokens per window."),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Windows per forward pass."),
        seed: int = typer.Option(0, help="Seed of the windows and of NSGA-III."),
        device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
        dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-candidate lines."),
    ) -> None:
        """Search the meta metric (beta, gamma) and a layer profile by NSGA-III on the model-wise reconstruction error."""
        t0 = time.perf_counter()
        target, nm_t, knots = plan(sparsity, nm, knots, span, population, trials, state)
        sources = _sources(calibration, calibration_opt)
        space = SearchSpace(knots=knots, span=span)
        settings = {"model": model, "target_sparsity": target, "nm": nm, "calibration": sorted(calibration),
                    "calibration_opt": sorted(calibration_opt or []), "nsamples": nsamples, "seqlen": seqlen, "seed": seed,
                    "population": population, "trials": trials, "space": space.as_dict(), "dtype": dtype}
        from .search import check_resumable, read_state

        old = read_state(state)  # a state of another search fails now, before the model loads
        if old is not None:
            check_resumable(old, settings, state)

        from truthprune import load_calibration, load_model, resolve_bos, weights_fingerprint

        from .fitness import ModelFitness
        from .search import run_search, write_state

        loaded = load_model(model, device=device, dtype=dtype)
        calib = load_calibration(sources, loaded.tokenizer, nsamples, seqlen, seed, bos=resolve_bos(loaded.tokenizer).window_bos)
        fitness = ModelFitness(loaded.model, calib, target, nm_t, batch_size)

        def evaluate(x):
            beta, gamma, k = decode(x, space)
            return fitness(beta, gamma, layer_sparsities(k, target, fitness.params) if knots else None)

        def progress(done, total, error, replayed):
            if not quiet:
                typer.echo(f"candidate {done}/{total}: error {error:.5f}{' (stored)' if replayed else ''}", err=True)

        def describe(best):
            beta, gamma, k = decode(best["x"], space)
            return {"beta": beta, "gamma": gamma, **({"knots": k} if knots else {})}

        result = run_search(evaluate, space, settings, state, population, trials, seed, describe, progress)
        best = result["best"]
        result["target_sparsity"] = target
        if knots:
            result[SPARSITY_KEY] = layer_sparsities(best["knots"], target, fitness.params)
        result["dense_fingerprint"] = weights_fingerprint(loaded.model)
        write_state(state, result)
        gain = 100 * (1 - best["error"] / result["wanda_error"]) if result["wanda_error"] > 0 else 0.0
        typer.echo(f"best of {len(result['evaluations'])} candidates: beta {best['beta']:.4f}, gamma {best['gamma']:.4f}, "
                   f"error {best['error']:.5f} (Wanda's {result['wanda_error']:.5f}, {gain:+.1f} %)")
        if knots:
            typer.echo("layer sparsities: " + ", ".join(f"{s:.3f}" for s in result[SPARSITY_KEY]))
        typer.echo(f"written to {state.resolve()} in {time.perf_counter() - t0:.1f} s; use it with --pruner optishear "
                   f"--pruner-opt from={state}" + (f" --allocator optishear --allocator-opt from={state}" if knots else ""))

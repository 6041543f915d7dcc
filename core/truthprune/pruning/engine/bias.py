"""Bias correction: give each pruned linear the output-mean shift between the dense and the pruned model.

Why: pruning (and quantizing) changes each linear's mean output on real text, and that mean
shift travels down the residual stream; a constant per output is the cheapest thing that can
remove it (FLAP's bias compensation, for unstructured masks here). For linear ``l`` with dense
weight W, pruned weight W', dense-model inputs of mean mu_d and pruned-model inputs of mean mu_p
(both over the calibration tokens, padding excluded), the new bias is

    b' = b + W mu_d - W' mu_p

so the pruned model's mean output equals the dense model's on the calibration data. mu_d comes
from the dense-target streams (:mod:`.dense`), mu_p from one extra pass of the *pruned* layer (after
its masks and any quantization), so it includes what pruning this layer's earlier linears did to
later linears' inputs; the biases of one decoder layer are set together after that pass (a bias
given to q/k/v does not feed back into the measured means of o_proj within the same layer).

Where a linear gets its bias: many architectures build their projections without one (Llama,
Gemma) but have a config flag that adds it (``attention_bias``, ``mlp_bias``); the flag is set,
so plain transformers reloads the checkpoint, and every module the flag gives a bias gets a zero
one first (identical outputs until corrected). Linears no flag can give a bias (Gemma's MLP,
Qwen2's o_proj) are left uncorrected, with one warning line; a run in which *no* pruned linear can
be corrected is refused, since the option would do nothing.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError
from ...models.adapter import decoder_layers, prunable_linears
from ...models.support import selection_of, skeleton

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- pure maths


def output_shift(dense_mean_out: torch.Tensor, weight: torch.Tensor, pruned_mean_in: torch.Tensor) -> torch.Tensor:
    """W mu_d - W' mu_p (float64 [out]): the bias that restores the dense mean output.

    ``dense_mean_out`` is W mu_d, computed before W was pruned; ``weight`` is W'.
    """
    return dense_mean_out.double() - weight.detach().double() @ pruned_mean_in.double().to(weight.device)


# ----------------------------------------------------------------------------- which linears have a slot


def _text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def bias_flags(config: Any) -> list[str]:
    """Config switches that may add biases: boolean fields named ``*_bias`` that are off."""
    text = _text_config(config)
    return sorted(k for k, v in text.to_dict().items() if k.endswith("_bias") and v is False)


def with_flags(config: Any, flags: list[str] | tuple[str, ...]) -> Any:
    """A copy of ``config`` with ``flags`` switched on (in the text config of a nested one)."""
    out = copy.deepcopy(config)
    text = _text_config(out)
    for f in flags:
        setattr(text, f, True)
    return out


def _biased(layer: Any, selection: Any) -> set[str]:
    return {n for n, m in prunable_linears(layer, selection).items() if getattr(m, "bias", None) is not None}


@dataclass(frozen=True)
class BiasPlan:
    """Config flags to switch on, the pruned linears (local names) that get a corrected bias, and those that cannot."""

    flags: tuple[str, ...]
    corrected: tuple[str, ...]
    no_slot: tuple[str, ...]

    def warning(self) -> str | None:
        if not self.no_slot:
            return None
        return (f"--bias-correction: {', '.join(self.no_slot)} have no bias slot in this architecture (no config flag adds "
                f"one); they are pruned without correction")


def plan_bias(config: Any, selection: Any = None, trust_remote_code: bool = False) -> BiasPlan:
    """Which flags to set and which linears get a bias, from meta-device skeletons (no weights).

    A flag is set only when it gives at least one pruned linear a bias. Raises UserError when no
    pruned linear can be corrected.
    """
    base = skeleton(config, trust_remote_code)
    layer = decoder_layers(base)[0]
    names = list(prunable_linears(layer, selection))
    have = _biased(layer, selection)
    flags = []
    for flag in bias_flags(config):
        added = _biased(decoder_layers(skeleton(with_flags(config, [flag]), trust_remote_code))[0], selection) - have
        if added:
            flags.append(flag)
            have |= added
    plan = BiasPlan(tuple(flags), tuple(n for n in names if n in have), tuple(n for n in names if n not in have))
    if not plan.corrected:
        kind = getattr(_text_config(config), "model_type", "?")
        raise UserError(f"--bias-correction: no pruned linear of this {kind} model has a bias slot (none of "
                        f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''} has a bias and no config flag adds one); "
                        "drop --bias-correction")
    return plan


def check_bias_correction(config: Any) -> None:
    """Plan-time check of ``--bias-correction`` (a run config): refuse a local model no pruned linear of
    which can get a bias. Hub ids and .gguf files are checked after loading."""
    from pathlib import Path

    path = Path(str(config.model)).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        from transformers import AutoConfig

        trust = bool(getattr(config, "trust_remote_code", False))
        plan_bias(AutoConfig.from_pretrained(str(path), trust_remote_code=trust), selection_of(config), trust)


def add_zero_biases(model: Any, reference: Any) -> list[str]:
    """Give ``model`` a zero bias wherever ``reference`` (its architecture with the flags on) has one; return their names."""
    have = dict(model.named_parameters())
    added = []
    for name, p in reference.named_parameters():
        if name in have:
            continue
        owner, _, attr = name.rpartition(".")
        module = model.get_submodule(owner)
        if attr != "bias" or getattr(module, "weight", None) is None:
            raise RuntimeError(f"switching on the bias flags adds {name!r}, which is not a bias; refusing to guess its value")
        w = module.weight
        module.bias = torch.nn.Parameter(torch.zeros(p.shape, dtype=w.dtype, device=w.device), requires_grad=False)
        added.append(name)
    return added


def set_flags_in_config_json(path: Path, flags: tuple[str, ...]) -> None:
    """Switch ``flags`` on in a saved config.json (inside ``text_config`` when the model nests one)."""
    if not flags:
        return
    data = json.loads(path.read_text())
    target = data["text_config"] if isinstance(data.get("text_config"), dict) and flags[0] not in data else data
    for f in flags:
        target[f] = True
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- the engine's part


@dataclass
class BiasCorrection:
    """Per-run state of ``--bias-correction`` inside the engine (see the module doc)."""

    plan: BiasPlan
    dp: Any

    @classmethod
    def start(cls, model: Any, layers: Any, setup: Any) -> BiasCorrection:
        """Plan from the model's config, switch the flags on and add the zero biases they imply.

        Resident model: biases are added to it; offload skeleton (parameters on meta): it was
        built with the flags on already (:func:`truthprune.pruning.engine.offload.prune_checkpoint`),
        so nothing is missing.
        """
        plan = plan_bias(model.config, setup.selection)
        if plan.warning():
            log.warning("%s", plan.warning())
        if plan.flags:
            flagged = with_flags(model.config, plan.flags)
            for f in plan.flags:
                setattr(_text_config(model.config), f, True)
            added = add_zero_biases(model, skeleton(flagged))
            log.info("--bias-correction: set %s; %d zero biases added", ", ".join(plan.flags), len(added))
        return cls(plan, setup.dp)

    @property
    def names(self) -> tuple[str, ...]:
        return self.plan.corrected

    def summary(self) -> dict[str, Any]:
        return {"flags": list(self.plan.flags), "corrected": list(self.plan.corrected), "no_slot": list(self.plan.no_slot),
                "layer_shift": []}

    def dense_means(self, linears: dict[str, Any], stats: dict[str, Any]) -> dict[str, torch.Tensor]:
        """W mu_d per corrected linear among ``linears``, from the paired statistics, before it is pruned."""
        out = {}
        for name in (n for n in self.names if n in linears):
            st = stats.get(name)
            if st is None or st.dense is None or st.dense.sum is None or st.n_tokens == 0:
                raise RuntimeError(f"--bias-correction: no dense-input mean for {name}; the engine did not pair its statistics")
            w = linears[name].weight.detach().double()
            out[name] = w @ (st.dense.sum.double().to(w.device) / st.n_tokens)
        return out

    def correct(self, layer: Any, linears: dict[str, Any], targets: dict[str, torch.Tensor],
                pruned_means: dict[str, torch.Tensor]) -> float:
        """Add W mu_d - W' mu_p to each corrected linear's bias; return the mean |shift| of the layer."""
        total, count = 0.0, 0
        for name in self.names:
            lin = linears[name]
            shift = output_shift(targets[name], lin.weight, pruned_means[name])
            lin.bias.data.add_(shift.to(device=lin.bias.device, dtype=lin.bias.dtype))
            self.dp.broadcast_(lin.bias.data)
            total += float(shift.abs().sum())
            count += shift.numel()
        return total / max(count, 1)

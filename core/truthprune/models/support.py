"""Can truthprune prune this model as asked? Answered at plan time, before any weight is read.

For a local model directory the architecture is built from its ``config.json`` on the meta
device (no memory, no weights) and checked like the loaded model will be: a causal-LM class
exists, the decoder layers are found, ``--targets``/``--ignore`` select at least one weight, and
no selected MoE expert layout is one the engine cannot prune. Embedded aliases are known to
work; ``.gguf`` files and hub ids are checked right after loading (:func:`check_loaded`), still
before calibration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import UserError
from .adapter import TargetSelection, check_targets
from .adapter import decoder_layers, prunable_linears, resolve_layers
from .embedded import CHUNKED, chunk_paths
from .spec import cached_config

log = logging.getLogger(__name__)


def selection_of(config: Any) -> TargetSelection:
    """The target selection of a run configuration (``targets`` / ``ignore``)."""
    return TargetSelection.from_options(getattr(config, "targets", None), getattr(config, "ignore", None))


def skeleton(model_config: Any, trust_remote_code: bool = False):
    """The model class of ``model_config`` instantiated on the meta device, or a UserError."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    except ValueError as err:
        kind = getattr(model_config, "model_type", "?")
        if "Unrecognized configuration class" in str(err) or "does not recognize" in str(err):
            raise UserError(
                f"model type {kind!r} has no decoder-only causal-LM class in transformers, so truthprune cannot prune it; "
                "supported families are listed in docs/models.md (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, Mixtral, Qwen-MoE)"
            ) from None
        raise


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_SKELETONS: dict[tuple[str, float, bool], Any] = {}  # (directory, config.json mtime, trust_remote_code) -> skeleton


def local_skeleton(path: Path, trust_remote_code: bool = False):
    """The meta-device model of a local directory's config.json (built once per process), or a
    UserError: an unknown activation or rope type, or any config transformers cannot build."""
    from transformers import AutoConfig

    key = (str(Path(path).resolve()), (Path(path) / "config.json").stat().st_mtime, trust_remote_code)
    if key in _SKELETONS:
        return _SKELETONS[key]
    try:
        model_config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise UserError(f"{path}/config.json cannot be read by transformers ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:160] if str(err) else ''}); the config was edited or is damaged") from None
    try:
        model = skeleton(model_config, trust_remote_code)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - an unknown hidden_act, rope type ...: the config's fault, one line
        raise UserError(f"{path}/config.json describes a model transformers cannot build ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:160] if str(err) else ''}); the config was edited or is damaged") from None
    _SKELETONS.clear()  # keep one: a sweep or a command checks the same model repeatedly
    _SKELETONS[key] = model
    return model


def _check_config_names(path: Path, config: dict) -> None:
    """hidden_act and the rope type must be ones transformers knows (checked before building)."""
    from transformers.activations import ACT2FN
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    sizes = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    for key in ("hidden_act", "hidden_activation"):
        act = sizes.get(key)
        if act is not None and (not isinstance(act, str) or act not in ACT2FN):
            raise UserError(f"{path}/config.json: {key} = {act!r} is not an activation transformers knows "
                            f"({', '.join(sorted(ACT2FN)[:8])}, ...); the config was edited or is damaged")
    for key in ("rope_scaling", "rope_parameters"):
        rope = sizes.get(key)
        if isinstance(rope, dict):
            kind = rope.get("rope_type", rope.get("type", "default"))
            if kind not in ("default", *ROPE_INIT_FUNCTIONS):
                raise UserError(f"{path}/config.json: {key}.rope_type = {kind!r} is not a rope type transformers knows "
                                f"(default, {', '.join(ROPE_INIT_FUNCTIONS)}); the config was edited or is damaged")


def check_checkpoint(path: Path, config: dict, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """The tensors of a local safetensors checkpoint against the architecture its config.json
    builds (on the meta device, no weights read): every parameter present with its shape, no
    unexpected weight matrix, floating-point weights. Refused at plan time instead of loading
    a model with dropped layers, random tensors, a missing output head (--offload never noticed)
    or int8/bool weights silently cast to float."""
    sizes = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    if not tensors or config.get("auto_map") or config.get("quantization_config") or sizes.get("quantization_config"):
        return  # pickles (names unknown unread), custom code, quantized formats: checked as they load
    _check_config_names(path, config)
    model = local_skeleton(path)
    from transformers.conversion_mapping import get_model_conversion_mapping

    if get_model_conversion_mapping(model, add_legacy=False):
        return  # checkpoint names are renamed as they load (fused experts, multimodal prefixes): checked then
    params = dict(model.named_parameters())  # tied weights once: the output head tied to the embedding is not required
    allowed = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    where = f"the checkpoint {str(path)!r}"
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise UserError(f"{where} lacks {len(missing)} weight tensor(s) its config.json needs (first: {missing[0]}); they "
                        "would be random, so the numbers would mean nothing: re-save the checkpoint")
    unexpected = sorted(k for k, (_, shape) in tensors.items() if k not in allowed and len(shape) >= 2)
    if unexpected:
        raise UserError(f"{where} holds {len(unexpected)} weight matrix(es) its config.json has no place for (first: "
                        f"{unexpected[0]}); they would be dropped: the config does not belong to these weights, re-save "
                        "the checkpoint")
    for name, shape in allowed.items():
        if name in tensors and tuple(tensors[name][1]) != shape:
            raise UserError(f"{where}: {name} has shape {list(tensors[name][1])} but its config.json needs {list(shape)}; "
                            "the config does not belong to these weights: re-save the checkpoint")
    for name, p in params.items():
        dtype = tensors[name][0]
        if p.dim() >= 2 and dtype not in _FLOAT_DTYPES:
            raise UserError(f"{where}: the weight {name} is stored as {dtype}, not floating point; truthprune reads "
                            "F32/F16/BF16 checkpoints (it would cast it silently): convert the checkpoint")


def plan_check(config: Any) -> TargetSelection:
    """Validate ``--targets``/``--ignore`` and, for a local model directory, the architecture."""
    selection = selection_of(config)
    spec = str(getattr(config, "model", ""))

    if spec in CHUNKED:
        chunk_paths(spec)  # every chunk wheel installed, or one line with the pip command
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        model = local_skeleton(path, getattr(config, "trust_remote_code", False))
        check_targets(model, selection)
        check_nm(model, selection, getattr(config, "nm_tuple", None))
    return selection


def check_nm(model: Any, selection: TargetSelection, nm: tuple[int, int] | None) -> None:
    """--nm N:M groups M consecutive input weights: every pruned weight's input width must divide by M."""
    if nm is None:
        return

    m = nm[1]
    for i, layer in enumerate(decoder_layers(model)):
        for name, lin in prunable_linears(layer, selection).items():
            if lin.in_features % m:
                raise UserError(f"--nm {nm[0]}:{m}: {name} of layer {i} has {lin.in_features} inputs, not a multiple of {m}; "
                                "choose an M that divides every pruned weight's input width (2:4 usually does)")


def check_loaded(model: Any, config: Any) -> TargetSelection:
    """The same check on a loaded model (for .gguf files and hub ids); returns the selection."""
    selection = selection_of(config)
    names = check_targets(model, selection)
    check_nm(model, selection, getattr(config, "nm_tuple", None))
    log.info("pruning targets per decoder layer: %d (%s%s)", len(names), ", ".join(names[:6]), ", ..." if len(names) > 6 else "")
    return selection


def check_layer_indices(spec: str, layers: list[int] | None, flag: str) -> None:
    """Decoder-layer indices (``--layers 99``) against a local model's config, before it loads."""
    if not layers:
        return

    cfg = cached_config(spec)
    sizes = cfg.get("text_config") if isinstance(cfg, dict) and isinstance(cfg.get("text_config"), dict) else cfg
    n = sizes.get("num_hidden_layers") if isinstance(sizes, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return  # known only once the model is loaded (a hub id, a first-use .gguf): checked then

    try:
        resolve_layers(layers, n)
    except UserError as err:
        raise UserError(f"{flag}: {err}") from None

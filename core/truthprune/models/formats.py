"""Plan-time check of a ``--model`` argument: the format, the architecture and the weights.

Why here and not in the loader: a BERT directory used to *pass* ``eval ppl`` and ``prune``
(transformers maps ``bert`` to a causal-LM head), a random-bytes ``model.safetensors`` or a
truncated ``.gguf`` ended in a traceback after minutes of start-up, and a pickle-only
``pytorch_model.bin`` was accepted although the promise is "safetensors only". Everything here
reads headers and JSON only (no torch, no transformers), so it runs in milliseconds before any
work, and every refusal is one :class:`UserError` line naming the problem and the fix.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..textio import describe, require_file
from .spec import EMBEDDED_MODELS
from .support import check_checkpoint
from ..cache import cache_root, file_key
from ..textio import read_json_file

# model families that are encoders (masked LM) or encoder-decoders: not prunable as decoder-only
ENCODER_TYPES = frozenset({
    "albert", "bart", "bert", "big_bird", "bigbird_pegasus", "camembert", "canine", "convbert", "data2vec-text",
    "deberta", "deberta-v2", "distilbert", "electra", "ernie", "esm", "flaubert", "fnet", "funnel", "ibert",
    "layoutlm", "longformer", "luke", "marian", "mbart", "megatron-bert", "mobilebert", "modernbert", "mpnet", "mra",
    "mt5", "mvp", "nezha", "nystromformer", "pegasus", "plbart", "prophetnet", "rembert", "roberta",
    "roberta-prelayernorm", "roc_bert", "roformer", "squeezebert", "switch_transformers", "t5", "umt5", "whisper",
    "xlm", "xlm-roberta", "xlm-roberta-xl", "xmod", "yoso",
})
_CAUSAL_HEAD = re.compile(r"(ForCausalLM|LMHeadModel|ForConditionalGeneration)$")
_SIZE_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
              "vocab_size", "max_position_embeddings")
_HEADER_LIMIT = 100_000_000  # a safetensors JSON header larger than this is corrupt
_FIX_DIR = "point --model at a directory written by save_pretrained (config.json + model.safetensors)"


def _read_json(path: Path, what: str) -> Any:
    return read_json_file(path, what)


# ----------------------------------------------------------------------------- config.json


def check_config(config: Any, where: str) -> None:
    """Refuse configs that are not decoder-only causal language models."""
    if not isinstance(config, dict):
        raise UserError(f"{where} is not a JSON object; {_FIX_DIR}")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(f"{where} has no model_type; {_FIX_DIR}")
    archs = config.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise UserError(f"{where}: 'architectures' must be a list of class names")
    arch = f" ({', '.join(archs)})" if archs else ""
    if config.get("is_encoder_decoder") or model_type in ENCODER_TYPES:
        kind = "an encoder-decoder" if config.get("is_encoder_decoder") else "an encoder (masked language model)"
        raise UserError(f"{where}: model_type {model_type!r}{arch} is {kind}; truthprune prunes decoder-only causal "
                        "language models (Llama, Mistral, Qwen2, Gemma, ...)")
    bad = [a for a in archs if not _CAUSAL_HEAD.search(a)]
    if bad:
        raise UserError(f"{where}: architecture {bad[0]!r} is not a causal language model (no LM head); save the "
                        "model with its ...ForCausalLM class, or pass a decoder-only causal LM")
    sizes = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    for key in _SIZE_KEYS:
        value = sizes.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"{where}: {key} = {value!r} is not a positive integer; the config was edited or is damaged")
    check_attention(sizes, where)


def check_attention(sizes: dict, where: str) -> None:
    """Head counts that divide: otherwise the model builds with wrong shapes and fails deep inside."""
    hidden, heads, kv = sizes.get("hidden_size"), sizes.get("num_attention_heads"), sizes.get("num_key_value_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and sizes.get("head_dim") is None and hidden % heads:
        raise UserError(f"{where}: hidden_size {hidden} is not divisible by num_attention_heads {heads} (and no head_dim "
                        "is given); the config was edited or is damaged")
    if isinstance(heads, int) and isinstance(kv, int) and heads % kv:
        raise UserError(f"{where}: num_attention_heads {heads} is not divisible by num_key_value_heads {kv}; the config "
                        "was edited or is damaged")


def check_json_files(directory: Path) -> None:
    """Every small JSON file of a checkpoint (tokenizer, generation config...) must parse."""
    for f in sorted(directory.glob("*.json")):
        if f.name != "config.json" and f.stat().st_size < 200_000_000:
            _read_json(f, "checkpoint file")


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tokenizer_config.json")


def check_tokenizer_files(directory: Path) -> None:
    """A model directory needs its tokenizer: without one the load failed with a traceback."""
    found = [n for n in _TOKENIZER_FILES if os.path.lexists(directory / n)]
    if not found:
        raise UserError(f"model directory {str(directory)!r} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json); "
                        "save the tokenizer with the model (tokenizer.save_pretrained(DIR))")
    for name in found:
        f = directory / name
        require_file(f, "tokenizer file", "save the tokenizer again")
        if f.stat().st_size == 0:
            raise UserError(f"tokenizer file {str(f)!r} is empty; save the tokenizer again (tokenizer.save_pretrained(DIR))")


# ----------------------------------------------------------------------------- weight files


# bits per element of every safetensors dtype (the format's own list)
SAFETENSORS_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
                    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
                    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
Tensors = dict[str, tuple[str, list[int]]]  # name -> (dtype, shape), from safetensors headers


def _header_problem(name: str, info: Any) -> str | None:
    """What is wrong with one tensor entry of a safetensors header (None: nothing)."""
    if not isinstance(info, dict):
        return "is not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_BITS:
        return f"has the unknown dtype {str(dtype)[:20]!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return "has no valid shape"
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) and not isinstance(o, bool)
                                                                      for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        return "has no valid data_offsets"
    n = 1
    for d in shape:
        n *= d
    if -(-n * SAFETENSORS_BITS[dtype] // 8) != offsets[1] - offsets[0]:
        return f"claims {dtype} {shape} ({n} values) but spans {offsets[1] - offsets[0]} bytes"
    return None


def check_safetensors(path: Path) -> Tensors:
    """Validate a safetensors header as the format does, before any tensor is read: a plausible
    header length, a JSON object, every tensor's dtype known, its shape x dtype equal to its byte
    span, the spans contiguous from 0 and ending exactly at the end of the file. Returns the tensors."""
    require_file(path, "weight file", "re-save the checkpoint")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n <= 1 or n > min(_HEADER_LIMIT, size - 8):
                raise ValueError("the header length is impossible")
            header = json.loads(fh.read(n).decode("utf-8"))
    except RecursionError:
        raise UserError(f"{str(path)!r} is not a valid safetensors file (its header is nested too deeply); it is corrupt: "
                        "re-download or re-save the checkpoint") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{str(path)!r} is not a valid safetensors file ({str(err)[:120]}); it is corrupt or truncated: "
                        "re-download or re-save the checkpoint") from None
    except OSError as err:
        raise UserError(f"cannot read {str(path)!r}: {err.strerror or err}") from None
    if not isinstance(header, dict):
        raise UserError(f"{str(path)!r} is not a valid safetensors file (its header is not an object); re-save it")
    data = size - 8 - n
    tensors: Tensors = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        problem = _header_problem(name, info)
        if problem is not None:
            raise UserError(f"{str(path)!r}: tensor {name[:80]!r} {problem}; the file is corrupt, re-save the checkpoint")
        begin, end = info["data_offsets"]
        if end > data:
            raise UserError(f"{str(path)!r} is truncated: tensor {name[:80]!r} ends at byte {end} of a {data}-byte "
                            "data section; re-download or re-save the checkpoint")
        spans.append((begin, end, name))
        tensors[name] = (info["dtype"], list(info["shape"]))
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise UserError(f"{str(path)!r}: tensor {name[:80]!r} starts at byte {begin}, not {at} (the data overlap or "
                            "leave a gap); the file is corrupt, re-save the checkpoint")
        at = end
    if at != data:
        raise UserError(f"{str(path)!r} has {data - at} bytes after its last tensor; it is corrupt, re-save the checkpoint")
    return tensors


def check_layer_count(config: dict, tensors: Tensors, where: str) -> None:
    """config.json's num_hidden_layers against the decoder layers the weights hold, from names
    only: a config that says 1 layer over 2 layers of weights silently dropped one, and one that
    says 1,000,000 built a model for minutes before anything failed."""
    sizes = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    n = sizes.get("num_hidden_layers")
    if not isinstance(n, int) or isinstance(n, bool) or not tensors:
        return
    stacks: dict[str, set[int]] = {}
    for name in tensors:
        m = re.match(r"(.+?)\.(\d+)\.", name)
        if m:
            stacks.setdefault(m.group(1), set()).add(int(m.group(2)))
    if not stacks or any(found == set(range(n)) for found in stacks.values()):
        return
    prefix, found = max(stacks.items(), key=lambda kv: sum(name.startswith(kv[0] + ".") for name in tensors))
    held = f"0..{max(found)}" if found == set(range(max(found) + 1)) else ", ".join(map(str, sorted(found)[:8]))
    raise UserError(f"{where} says num_hidden_layers = {n}, but the weights hold the decoder layers {held} under "
                    f"{prefix!r}; the config does not belong to these weights: re-save the checkpoint")


def check_safetensors_index(index: Path) -> list[Path]:
    """The sharded checkpoint index: JSON, a weight_map of names to existing shard files."""
    data = _read_json(index, "checkpoint index")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise UserError(f"{str(index)!r} has no weight_map of tensor names to shard files; re-save the checkpoint")
    shards = []
    for shard in sorted(set(weight_map.values())):
        p = index.parent / shard
        if Path(shard).is_absolute() or ".." in Path(shard).parts or not p.is_file():
            raise UserError(f"{str(index)!r} names the shard {shard!r}, which is not a file beside it; re-save the checkpoint")
        shards.append(p)
    return shards


def check_gguf(path: Path) -> None:
    """The GGUF magic, version, metadata and tensor table, and that the data is not truncated."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise UserError(f"cannot read GGUF file {str(path)!r}: {err.strerror or err}") from None
    if magic != b"GGUF":
        raise UserError(f"{str(path)!r} is not a GGUF file (no GGUF magic number); pass a .gguf model file")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as err:  # the reader raises struct.error, ValueError, IndexError... on corrupt input
        raise UserError(f"{str(path)!r} is a corrupt or truncated GGUF file ({type(err).__name__}); "
                        "re-download it") from None
    if not reader.tensors or end > path.stat().st_size:
        raise UserError(f"{str(path)!r} is a truncated GGUF file (its tensors end past the file); re-download it")
    missing = [k for k in ("general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.tokens") if k not in reader.fields]
    if missing:
        raise UserError(f"{str(path)!r} is an incomplete GGUF file (no {missing[0]}); it cannot be loaded as a model with "
                        "its tokenizer: re-download it")
    arch = reader.fields.get("general.architecture")
    if arch is not None:
        try:
            name = bytes(arch.parts[arch.data[0]]).decode("utf-8", "replace")
        except (IndexError, TypeError):
            name = ""
        if name in ENCODER_TYPES:
            raise UserError(f"{str(path)!r} holds a {name!r} model, an encoder; truthprune prunes decoder-only causal LMs")


def check_weights(directory: Path, allow_pickle: bool) -> Tensors:
    """safetensors (single or sharded) are checked and their tensors returned; pickle-only
    checkpoints need --allow-pickle (and return no tensors: their names are unknown unread)."""
    index, single = directory / "model.safetensors.index.json", directory / "model.safetensors"
    tensors: Tensors = {}
    if os.path.lexists(index):
        for shard in check_safetensors_index(index):
            tensors.update(check_safetensors(shard))
        return tensors
    if os.path.lexists(single):
        return check_safetensors(single)
    shards = sorted(directory.glob("*.safetensors"))
    if shards:
        for shard in shards:
            tensors.update(check_safetensors(shard))
        return tensors
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")
                     or p.name == "pytorch_model.bin.index.json")
    if pickles and not allow_pickle:
        raise UserError(f"model directory {str(directory)!r} has only pickle weights ({pickles[0]}): loading a pickle can "
                        "run code from the file, so truthprune reads safetensors only; convert it, or pass --allow-pickle "
                        "if you trust the file")
    if not pickles:
        raise UserError(f"model directory {str(directory)!r} has no weights (model.safetensors); {_FIX_DIR}")
    return tensors


# ----------------------------------------------------------------------------- hub ids


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = re.sub(r"^https?://", "", endpoint).split("/")[0].split(":")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_hub_file(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        hit = try_to_load_from_cache(repo, filename)
    except Exception:  # an id the hub library rejects: the caller reports it
        return None
    return Path(hit) if isinstance(hit, str) else None


def check_hub_id(spec: str, flag: str = "--model") -> None:
    """Plan time, no network: a well-formed id; a cached config is checked; offline and uncached fails."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", spec) or ".." in spec:
        raise UserError(f"{flag} {spec!r} is not an existing path, a .gguf file or a Hugging Face hub id; "
                        "pass a model directory, a .gguf file or 'smollm2-135m'")
    cached = _cached_hub_file(spec, "config.json")
    if cached is not None:
        check_config(_read_json(cached, "model config"), f"config.json of {spec!r}")
        return
    if _hub_offline():
        raise UserError(f"{flag} {spec!r} is a hub id that is not in the local cache, and the hub is switched off "
                        "(HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE); download it first or pass a local directory")


def check_hub_reachable(spec: str) -> None:
    """Right before anything contacts the hub: one connection attempt (3 s at most) instead of the
    transformers retries (dozens of warnings over a minute) when there is no network."""
    if _cached_hub_file(spec, "config.json") is not None or _hub_offline():
        return
    if not _hub_reachable():
        raise UserError(f"--model {spec!r} is a hub id, but the Hugging Face hub cannot be reached and the model is not "
                        "cached; connect to the network, or pass a local directory, a .gguf file or 'smollm2-135m'")


# ----------------------------------------------------------------------------- entry point


def check_model_spec(spec: str, allow_pickle: bool = False, flag: str = "--model") -> str:
    """Check ``--model`` (or the option named ``flag``, e.g. ``--baseline``) before anything loads;
    returns its kind (embedded, gguf, local, hub)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"{flag} is empty; pass smollm2-135m, a model directory, a .gguf file or a hub id")
    if spec in EMBEDDED_MODELS:
        return "embedded"
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise UserError(f"GGUF file {spec!r} {describe(p)}; pass an existing .gguf file")

        converted = cache_root() / "models" / f"{p.stem}-{file_key(p.resolve())}" / "config.json"
        if not converted.is_file():  # a converted copy exists only for a file that loaded before
            check_gguf(p)
        return "gguf"
    if p.is_dir():
        cfg = p / "config.json"
        if not os.path.lexists(cfg):
            raise UserError(f"{flag}: model directory {spec!r} has no config.json; {_FIX_DIR}")
        config = _read_json(cfg, "model config")
        check_config(config, f"{str(cfg)!r}")
        tensors = check_weights(p, allow_pickle)
        check_layer_count(config, tensors, str(cfg))
        check_json_files(p)
        check_tokenizer_files(p)

        check_checkpoint(p, config, tensors)
        return "local"
    if os.path.lexists(p):
        raise UserError(f"{flag} {spec!r} {describe(p)}, not a .gguf file or a model directory; pass a model directory, "
                        "a .gguf file or a hub id")
    # a path, not a hub id: starts like one, ends with a separator (pruned/), or has more than one part
    if spec.startswith((".", "/", "~")) or spec.endswith(("/", os.sep)) or os.sep in spec.strip("/").replace("/", "", 1):
        raise UserError(f"{flag} {spec!r} does not exist; pass an existing model directory (e.g. one written "
                        "by --save), a .gguf file, or smollm2-135m")
    check_hub_id(spec, flag)
    return "hub"


# ----------------------------------------------------------------------------- load time


def load_causal_lm(auto_cls: Any, path: str, spec: str, **kwargs: Any) -> Any:
    """``auto_cls.from_pretrained`` that refuses a checkpoint whose weights do not fit the model.

    Why: transformers initialises missing tensors randomly with only a printed table (a checkpoint
    with renamed tensors "loaded" and gave meaningless numbers), and a shape mismatch ended in a
    RuntimeError traceback. Both are now one line naming the first offending tensor.
    """
    try:
        model, info = auto_cls.from_pretrained(path, output_loading_info=True, **kwargs)
    except RuntimeError as err:
        if "size mismatch" in str(err) or "mismatch" in str(err).lower():
            raise UserError(f"the weights in {spec!r} do not fit its config.json (a tensor has another shape); "
                            "the checkpoint is damaged or belongs to another model: re-save it") from None
        raise
    missing = sorted(info.get("missing_keys") or [])
    config = getattr(model, "config", None)
    tied = getattr(config, "tie_word_embeddings", False) or getattr(getattr(config, "text_config", None),
                                                                    "tie_word_embeddings", False)
    if tied:  # the output head shares the embedding's tensor: absent from the file by design
        missing = [k for k in missing if "lm_head" not in k]
    mismatched = list(info.get("mismatched_keys") or [])
    params = dict(model.state_dict()) if (info.get("unexpected_keys") or []) else {}
    unexpected = sorted(k for k in (info.get("unexpected_keys") or []) if not k.endswith("inv_freq") and k not in params)
    if unexpected:  # transformers drops them with only a printed table: a layer beyond the config's count, say
        raise UserError(f"the checkpoint {spec!r} holds {len(unexpected)} tensor(s) its architecture has no place for "
                        f"(first: {unexpected[0]}); they would be dropped: the config does not belong to these weights, "
                        "re-save the checkpoint")
    if missing or mismatched:
        first = missing[0] if missing else mismatched[0][0] if isinstance(mismatched[0], tuple) else mismatched[0]
        count = len(missing) + len(mismatched)
        raise UserError(f"the checkpoint {spec!r} lacks or mismatches {count} weight tensor(s) of its architecture (first: "
                        f"{first}); they would be random, so the numbers would mean nothing: re-save the checkpoint")
    return model

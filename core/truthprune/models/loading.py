"""Resolve a ``--model`` argument and load it with transformers.

Accepted specs: the embedded aliases ``smollm2-135m`` (the default) and ``gemma3-270m`` (see
:mod:`truthprune.models.embedded`), a ``.gguf`` file, a local model directory, or a Hugging Face
hub id. GGUF files are slow to load, so the first load converts them once into a safetensors
checkpoint under the cache directory; later loads read that copy. The conversion is its own
stage in run/prune summaries (``convert-gguf``, see :func:`needs_conversion`).

Why the conversion parses the file once: transformers reads a GGUF's metadata three times (the
tokenizer, the config, the weights), and gguf-py's reader walks every element of the vocabulary
arrays in Python -- for Gemma's 262,144-token vocabulary that was ~70 % of the conversion time,
while dequantising all weights (vectorised numpy) took ~7 s. The reader is therefore shared
between the three reads (:func:`_shared_gguf_reader`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .embedded import CHUNKED, SINGLE_FILE, assembled_path
from .embedded import embedded_gguf as embedded_gguf

log = logging.getLogger(__name__)

# alias -> (PyPI distribution, file suffix); the chunked ones name their meta package
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {**SINGLE_FILE, **{a: (c.meta_dist, ".gguf") for a, c in CHUNKED.items()}}
DEFAULT_MODEL = "smollm2-135m"
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def cache_root() -> Path:
    """``TRUTHPRUNE_CACHE`` or the platform user cache (``$XDG_CACHE_HOME/truthprune``)."""
    env = os.environ.get("TRUTHPRUNE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "truthprune"


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]


def converted_target(gguf: Path) -> Path:
    """Where the safetensors copy of ``gguf`` is (or will be) cached."""
    return cache_root() / "models" / f"{gguf.stem}-{_file_key(gguf)}"


def needs_conversion(spec: str) -> bool:
    """Whether loading ``spec`` will first reassemble and/or convert a GGUF (a stage of its own)."""
    if spec in CHUNKED:
        gguf = assembled_path(spec)
        return not gguf.is_file() or not (converted_target(gguf) / "config.json").is_file()
    if spec in SINGLE_FILE:
        try:
            gguf = embedded_gguf(spec)
        except UserError:
            return False  # the load reports the missing wheel
        return not (converted_target(gguf) / "config.json").is_file()
    if spec.endswith(".gguf") and Path(spec).expanduser().is_file():
        return not (converted_target(Path(spec).expanduser().resolve()) / "config.json").is_file()
    return False


@contextmanager
def _shared_gguf_reader():
    """Let transformers' three reads of one GGUF (tokenizer, config, weights) share one parse."""
    import gguf

    original = gguf.GGUFReader
    readers: dict[str, Any] = {}

    def shared(path, *args, **kwargs):
        key = str(Path(path).resolve())
        if args or kwargs or key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original
        readers.clear()


def converted_gguf_dir(gguf: Path) -> Path:
    """Convert a GGUF file to a safetensors checkpoint once; return the cached directory."""
    target = converted_target(gguf)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors under %s (first load only)", gguf.name, target)
    t0 = time.perf_counter()
    with _shared_gguf_reader():
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that carries a GGUF quantization config: the weights are
    # already dequantised to float32, so rebuild a plain model from the config and copy them in.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same conversion first: keep its copy
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted in %.1f s", time.perf_counter() - t0)
    return target


def cached_config(spec: str) -> dict | None:
    """A model's config.json read at plan time without loading or converting anything: a local
    directory's, or an embedded/GGUF model's once its conversion is cached (None otherwise)."""
    import json

    p = Path(spec).expanduser()
    if p.is_dir():
        cfg = p / "config.json"
    elif spec in EMBEDDED_MODELS or spec.endswith(".gguf"):
        try:
            if needs_conversion(spec):
                return None
            gguf = assembled_path(spec) if spec in CHUNKED else (embedded_gguf(spec) if spec in SINGLE_FILE else p.resolve())
            cfg = converted_target(gguf) / "config.json"
        except (UserError, OSError):
            return None  # a missing wheel or file is reported by the load stage
    else:
        return None
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None  # the load stage reports an unreadable config with its own message
    return data if isinstance(data, dict) else None


def resolve_model_path(spec: str) -> tuple[str, str]:
    """Return (path or hub id to load, kind) for a ``--model`` spec."""
    if spec in EMBEDDED_MODELS:
        return str(converted_gguf_dir(embedded_gguf(spec))), "embedded"
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise UserError(f"GGUF file {spec!r} does not exist")
        return str(converted_gguf_dir(p.resolve())), "gguf"
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"model directory {spec!r} has no config.json; point --model at a saved Hugging Face model")
        return str(p.resolve()), "local"
    if p.exists():
        raise UserError(f"--model {spec!r} is a file but not a .gguf; pass a model directory, a .gguf file or a hub id")
    return spec, "hub"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was requested but no CUDA GPU is available; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype not in _DTYPES:
        raise UserError(f"--dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
    if dtype == "auto":
        # CPUs are slow in half precision; GPUs run the checkpoint in bf16.
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, dtype)


@dataclass
class LoadedModel:
    """A model with its tokenizer and where it came from."""

    model: Any
    tokenizer: Any
    spec: str
    path: str
    kind: str
    device: str
    _fingerprint: str | None = field(default=None, repr=False)
    # results computed from these weights that a later run on the same (restored) weights may reuse,
    # e.g. the engine's dense statistics (truthprune.pruning.engine.dense.DenseCache); keyed by fingerprint
    reuse: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        """A hash of the current weights (changes when the model is pruned)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    def invalidate_fingerprint(self) -> None:
        self._fingerprint = None

    @property
    def max_context(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)


def weights_fingerprint(model: Any) -> str:
    """blake2b over every parameter's bytes, in name order: equal weights <=> equal fingerprint."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    h.update(type(model).__name__.encode())
    with torch.no_grad():
        for name, p in sorted(model.state_dict().items()):
            h.update(name.encode())
            t = p.detach().to("cpu").contiguous()
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_model(
    spec: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
) -> LoadedModel:
    """Load model and tokenizer for ``spec`` on ``device`` in ``dtype``; KV cache disabled."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path, kind = resolve_model_path(spec)
    if kind == "hub":  # fail fast and quietly without a network (truthprune.models.formats)
        from .formats import check_hub_reachable

        check_hub_reachable(spec)
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        from .formats import load_causal_lm  # refuses missing or mismatched weights instead of random ones

        model = load_causal_lm(AutoModelForCausalLM, path, spec, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except OSError as err:
        if kind == "hub":
            raise UserError(
                f"could not load model {spec!r} from the Hugging Face hub ({str(err).splitlines()[0][:120]}); "
                "check the id and your network, or pass a local directory, a .gguf file or 'smollm2-135m'"
            ) from None
        raise UserError(f"could not load model from {path!r}: {str(err).splitlines()[0][:160]}") from None
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UserError(f"model {spec!r} needs custom code; rerun with --trust-remote-code if you trust it") from None
        raise
    model.eval()
    model.config.use_cache = False
    model.to(dev)
    log.info("loaded %s (%s) on %s in %.1f s", spec, kind, dev, time.perf_counter() - t0)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, path=path, kind=kind, device=dev)

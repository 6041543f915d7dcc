"""Resolve a ``--model`` argument and load it with transformers.

Accepted specs: the embedded aliases ``smollm2-135m`` (the default) and ``gemma3-270m`` (see
:mod:`truthprune.models.embedded`), a ``.gguf`` file, a local model directory, or a Hugging Face
hub id. GGUF files are slow to load, so the first load converts them once into a safetensors
checkpoint under the cache directory; later loads read that copy. The conversion is its own
stage in run/prune summaries (``convert-gguf``, see :func:`truthprune.models.spec.needs_conversion`).

Why the conversion parses the file once: transformers reads a GGUF's metadata three times (the
tokenizer, the config, the weights), and gguf-py's reader walks every element of the vocabulary
arrays in Python -- for Gemma's 262,144-token vocabulary that was ~70 % of the conversion time,
while dequantising all weights (vectorised numpy) took ~7 s. The reader is therefore shared
between the three reads (:func:`_shared_gguf_reader`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .embedded import embedded_gguf
from .context import context_length
from .spec import EMBEDDED_MODELS, converted_target
from .formats import check_hub_reachable, load_causal_lm

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
_DTYPES = ("auto", "float32", "bfloat16", "float16")


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


def converted_gguf_dir(gguf: Path, quiet: bool = False) -> Path:
    """Convert a GGUF file to a safetensors checkpoint once; return the cached directory."""
    target = converted_target(gguf)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors under %s (first load only)", gguf.name, target)
    t0 = time.perf_counter()
    try:
        with _shared_gguf_reader(), quiet_transformers(progress=not quiet):
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (KeyboardInterrupt, SystemExit, MemoryError, UserError):
        raise
    except Exception as err:  # noqa: BLE001 - missing metadata, an unsupported architecture: the file's fault
        first = (str(err).splitlines() or [""])[0][:160]
        raise UserError(f"{str(gguf)!r} cannot be converted ({type(err).__name__}: {first}); the GGUF file is incomplete or "
                        "of an architecture transformers cannot read: re-download it or pass a safetensors directory") from None
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


def resolve_model_path(spec: str, quiet: bool = False) -> tuple[str, str]:
    """Return (path or hub id to load, kind) for a ``--model`` spec."""
    if spec in EMBEDDED_MODELS:
        return str(converted_gguf_dir(embedded_gguf(spec), quiet)), "embedded"
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise UserError(f"GGUF file {spec!r} does not exist")
        return str(converted_gguf_dir(p.resolve(), quiet)), "gguf"
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
    # e.g. the engine's dense statistics (truthprune.pruning.engine.dense_stats.DenseCache); keyed by fingerprint
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
        return context_length(getattr(self.model, "config", None))


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


@contextmanager
def quiet_transformers(progress: bool = True):
    """transformers' own output during a load: its load-report tables (missing / unexpected keys,
    6 to 35 lines with terminal colours) are replaced by truthprune's one-line refusals, so they
    are silenced; its "Loading weights" bar only with ``progress=False`` (``-q``)."""
    from transformers.utils import logging as tlog

    level = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    if not progress:
        tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


def load_model(
    spec: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
    quiet: bool = False,
) -> LoadedModel:
    """Load model and tokenizer for ``spec`` on ``device`` in ``dtype``; KV cache disabled.
    ``quiet``: no progress bar (``-q``). Refuses (UserError) a tokenizer that does not load or
    whose token ids exceed the embedding, and NaN/Inf weights."""
    from transformers import AutoModelForCausalLM

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path, kind = resolve_model_path(spec, quiet=quiet)
    if kind == "hub":  # fail fast and quietly without a network (truthprune.models.formats)

        check_hub_reachable(spec)
    t0 = time.perf_counter()
    try:
        with quiet_transformers(progress=not quiet):
            tokenizer = load_tokenizer(path, spec, trust_remote_code)

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
    check_loaded_weights(model, tokenizer, spec)
    model.to(dev)
    log.info("loaded %s (%s) on %s in %.1f s", spec, kind, dev, time.perf_counter() - t0)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, path=path, kind=kind, device=dev)


def load_tokenizer(path: str, spec: str, trust_remote_code: bool):
    """AutoTokenizer, with every way a broken or missing tokenizer fails turned into one line."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - tokenizers raises bare Exceptions on a malformed tokenizer.json
        if isinstance(err, ValueError) and "trust_remote_code" in str(err):
            raise
        if isinstance(err, OSError) and not Path(path).exists():
            raise  # a hub id: load_model words it
        first = (str(err).splitlines() or [""])[0][:160]
        raise UserError(f"the tokenizer of {spec!r} does not load ({type(err).__name__}: {first}); save the tokenizer "
                        "with the model again (tokenizer.save_pretrained(DIR))") from None
    if tokenizer is None or not callable(getattr(tokenizer, "__call__", None)) or not len(tokenizer):
        raise UserError(f"the tokenizer of {spec!r} is empty (no vocabulary); save the tokenizer with the model again")
    return tokenizer


def check_loaded_weights(model: Any, tokenizer: Any, spec: str) -> None:
    """After loading: token ids fit the embedding, and every weight is finite (a NaN/Inf weight
    made every number NaN, and a prune of it was saved with exit 0)."""
    import torch

    emb = model.get_input_embeddings()
    rows = getattr(emb, "num_embeddings", None)
    try:
        top = max(tokenizer.get_vocab().values(), default=-1)
    except Exception:  # noqa: BLE001 - a tokenizer without get_vocab: its length stands in
        top = len(tokenizer) - 1
    if isinstance(rows, int) and top >= rows:
        raise UserError(f"the tokenizer of {spec!r} has token ids up to {top}, but the model's embedding has {rows} rows; "
                        "the tokenizer belongs to another model: save the matching tokenizer with it")
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise UserError(f"the weights of {spec!r} hold NaN or Inf (first in {name}); every result would be NaN: "
                                "use an intact checkpoint")

"""Registration and the thin ``generated`` calibration source (no network needed). The offline
``pydoc`` source, core's default, is a core built-in (truthprune.builtins)."""

from __future__ import annotations

import hashlib
import json
import logging
import os

from pydantic import Field

from truthprune import CalibrationSource, PluginConfig, hookimpl

log = logging.getLogger(__name__)


class GeneratedConfig(PluginConfig):
    temperature: float = Field(1.0, gt=0.0)
    top_k: int = Field(0, ge=0)
    """0 samples from the full distribution."""
    batch_size: int = Field(16, ge=1)
    """Sequences sampled together; part of the cache key because it decides the RNG streams."""
    cache: bool = True
    """Keep the sampled tokens under <cache>/calibration/generated, keyed by the model's weights."""


class GeneratedSource(CalibrationSource):
    name = "generated"
    description = "Text sampled from the dense model itself (seeded, temperature 1, cached per model fingerprint)."
    Config = GeneratedConfig
    needs_model = True

    def _cache_path(self, model, tokenizer, nsamples, seqlen, seed):
        from truthprune import cache_root, weights_fingerprint

        from .sampling import PROMPT_SET_VERSION, PROMPTS

        fp = weights_fingerprint(model)
        tok = [list(tokenizer(p)["input_ids"]) for p in PROMPTS]  # identifies the tokenizer too
        key = {
            "model": fp, "prompts": PROMPT_SET_VERSION, "prompt_ids": tok, "nsamples": nsamples, "seqlen": seqlen,
            "seed": seed, **self.config.model_dump(exclude={"cache"}),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return cache_root() / "calibration" / "generated" / f"{digest}.pt"

    def samples(self, tokenizer, nsamples, seqlen, seed, model=None):
        import torch

        from truthprune import UserError, read_cache_entry, window_samples

        from .sampling import generate_windows

        if model is None:
            raise UserError("calibration source 'generated' needs the model; use it through `truthprune run`")
        path = self._cache_path(model, tokenizer, nsamples, seqlen, seed) if self.config.cache else None
        ids = None
        if path is not None:
            ids = read_cache_entry(path, lambda p: torch.load(p, weights_only=True), "cached generated calibration")
        if ids is not None:
            if not isinstance(ids, torch.Tensor) or tuple(ids.shape) != (nsamples, seqlen):
                ids = None
            else:
                log.info("generated calibration text: using cached %s", path)
        if ids is None:
            cfg = self.config
            rows = generate_windows(model, tokenizer, nsamples, seqlen, seed, cfg.temperature, cfg.top_k, cfg.batch_size)
            ids = torch.tensor(rows, dtype=torch.long)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}-{id(self)}")  # unique across parallel processes
                torch.save(ids, tmp)
                tmp.replace(path)
        return window_samples(ids, f"generated: {nsamples} sampled sequences of {seqlen} tokens (T={self.config.temperature}), seed {seed}")


@hookimpl
def register_calibration_sources(register):
    register(GeneratedSource)

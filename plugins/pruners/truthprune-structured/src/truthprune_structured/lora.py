"""LoRA recovery after pruning: deterministic, resumable, merged at the end, pruned weights kept at 0.

Why every piece is a pure function of (seed, step): the batch of step ``t`` (:func:`batch_indices`)
and its learning rate (:func:`lr_at`) depend on nothing else, and a checkpoint stores the adapter
weights, the optimizer state, the loss history and the torch RNG state (LoRA dropout). A run
resumed from the checkpoint of step ``k`` therefore performs exactly the operations the
uninterrupted run performs from step ``k`` on, and ends with bit-identical weights.

Checkpoints are one file, ``state.pt``, replaced atomically (written beside it, then renamed), so
an interruption while writing leaves the previous checkpoint intact.

Why the zeros need care: a merged LoRA update ``B @ A`` is dense, so merging it into an
unstructured or N:M pruned model fills every pruned weight back in (the model is no longer sparse,
and a 2:4 pattern is gone). ``keep_sparsity`` decides how the weights that are exactly 0 before
training stay 0 (:mod:`.masked_lora`): ``merge`` trains ordinary peft adapters and re-applies the
mask after merging; ``adapter`` multiplies the update by the mask during training too, so the
model trained is the model saved; ``off`` keeps the old behaviour (zeros fill in).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("truthprune.finetune")

ALL_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
KEEP_SPARSITY = ("merge", "adapter", "off")


@dataclass(frozen=True)
class LoraSettings:
    """Everything that changes the trained weights (a checkpoint only resumes the same settings)."""

    steps: int = 100
    lr: float = 2e-4
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    batch_size: int = 4
    warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    target_modules: tuple[str, ...] = ALL_LINEARS
    keep_sparsity: str = "merge"  # merge | adapter | off (see the module docstring)
    base: str = ""  # fingerprint of the base weights and the training windows (set by the caller)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    resumed_from: int | None = None


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Windows of step ``step``: a seeded permutation per epoch, read in consecutive batches."""
    import torch

    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(perm[offset]))
    return out


def lr_at(step: int, s: LoraSettings) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10 % of ``lr``."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    span = max(1, s.steps - s.warmup)
    progress = min(1.0, (step - s.warmup) / span)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _trainable(model) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


_STATE = "state.pt"
_CKPT_KIND = "finetune-checkpoint"  # a --checkpoint-dir finetune created (removed again at the end)
_KEPT_KIND = "finetune-checkpoint-in-existing-dir"  # one that existed, empty: only finetune's files go


def _checkpoint_kind(path: Path) -> str | None:
    """Which of finetune's checkpoint directories ``path`` is (None: not one of them). One holding
    only state.pt was written by a finetune of an older truthprune, which created it."""
    from truthprune import read_marker

    if not path.is_dir():
        return None
    marker = read_marker(path)
    if marker is not None and marker.get("kind") in (_CKPT_KIND, _KEPT_KIND):
        return marker["kind"]
    return _CKPT_KIND if {p.name for p in path.iterdir()} == {_STATE} else None


def check_checkpoint_dir(path: Path, save: str) -> None:
    """--checkpoint-dir may not be, contain or lie in an input, --save or a special directory:
    finetune writes state.pt there and removes what it wrote at the end."""
    from truthprune import UserError, check_work_dir

    check_work_dir(path, "--checkpoint-dir", outputs=[("--save", save)])
    if path.is_dir() and any(path.iterdir()) and _checkpoint_kind(path) is None:
        raise UserError(f"--checkpoint-dir {str(path)!r} holds files finetune did not write; its state.pt would be "
                        "replaced and removed: give a new or empty directory")


def remove_checkpoint(path: Path) -> None:
    """After a finished finetune: remove state.pt, and the directory when finetune created it
    (its marker says so) and nothing else is in it. Never anything finetune did not write."""
    from truthprune import OUTPUT_MARKER

    kind = _checkpoint_kind(path)
    if kind is None:
        return  # not finetune's (a directory given without a checkpoint ever written): nothing to remove
    (path / _STATE).unlink(missing_ok=True)
    (path / OUTPUT_MARKER).unlink(missing_ok=True)
    if kind == _CKPT_KIND:
        try:
            path.rmdir()
        except OSError:
            pass  # something else is in it: kept


def save_state(path: Path, model, optimizer, state: TrainState, s: LoraSettings) -> None:
    import torch

    from truthprune import write_marker

    if not path.exists():
        path.mkdir(parents=True)
        write_marker(path, _CKPT_KIND, files=[_STATE])  # created here: removed again at the end
    elif not any(path.iterdir()):
        write_marker(path, _KEPT_KIND, files=[_STATE])  # an empty directory given: kept at the end
    blob = {
        "settings_key": s.key(),
        "settings": asdict(s),
        "step": state.step,
        "losses": list(state.losses),
        "adapter": {n: p.detach().clone() for n, p in _trainable(model)},
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
    }
    tmp = path / f".state.pt.tmp{os.getpid()}"
    torch.save(blob, tmp)
    os.replace(tmp, path / "state.pt")


def load_state(path: Path, model, optimizer, s: LoraSettings) -> TrainState:
    import torch

    from truthprune import UserError

    try:
        blob = torch.load(path / "state.pt", weights_only=False)
        blob["settings_key"], blob["settings"], blob["adapter"], blob["optimizer"], blob["rng"], blob["step"]
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 - cut short, or not a finetune checkpoint at all
        raise UserError(f"the checkpoint {str(path / 'state.pt')!r} does not read back ({type(err).__name__}); remove it to "
                        "start afresh") from None
    if blob["settings_key"] != s.key():
        diff = {k: (v, asdict(s)[k]) for k, v in blob["settings"].items() if asdict(s).get(k) != v}
        raise UserError(f"the checkpoint in {path} was made with other settings ({', '.join(f'{k}: {a} -> {b}' for k, (a, b) in diff.items())}); "
                        "rerun with the same settings, or remove it to start afresh")
    params = dict(_trainable(model))
    with torch.no_grad():
        for n, t in blob["adapter"].items():
            params[n].copy_(t)
    optimizer.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["rng"])
    return TrainState(step=blob["step"], losses=list(blob["losses"]), resumed_from=blob["step"])


def train_lora(model, windows, s: LoraSettings, checkpoint_dir: Path | None = None, checkpoint_every: int = 0,
               resume: bool = False, quiet: bool = True, on_step: Callable[[int], None] | None = None):
    """Train LoRA adapters on ``windows`` (CalibrationSamples) and merge them; return (model, TrainState).

    ``on_step(t)`` is called after step ``t`` (1-based) and its checkpoint; raising there
    interrupts training the way a kill would (tests use it).
    """
    import torch

    from .masked_lora import attach_adapters

    torch.manual_seed(s.seed)  # LoRA A initialisation
    peft_model, merge = attach_adapters(model, s.target_modules, s.rank, s.alpha, s.dropout, s.keep_sparsity)
    params = [p for _, p in _trainable(peft_model)]
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, foreach=False)
    state = TrainState()
    if resume and checkpoint_dir is not None and (checkpoint_dir / "state.pt").is_file():
        state = load_state(checkpoint_dir, peft_model, optimizer, s)
        log.info("finetune: resumed from step %d of %d (%s)", state.step, s.steps, checkpoint_dir)
    device = next(peft_model.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    n = len(windows)
    peft_model.train()
    from truthprune import progress_bar

    t0 = time.perf_counter()
    with progress_bar("LoRA recovery", s.steps, unit="steps", quiet=quiet) as advance:  # a bar on a terminal only
        advance(state.step)  # a resumed run starts where it stopped
        while state.step < s.steps:
            idx = torch.tensor(batch_indices(n, s.batch_size, state.step, s.seed))
            ids = windows.input_ids[idx].to(device)
            mask = windows.attention_mask[idx].to(device)
            labels = ids.masked_fill(mask == 0, -100)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, s)
            with autocast:
                loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
            if not math.isfinite(float(loss.detach())):  # diverged (e.g. --lr too large): save nothing
                from truthprune import UserError

                raise UserError(f"training diverged: the loss is {float(loss.detach())} at step {state.step + 1}; nothing was "
                                "saved: lower --lr (or --alpha) and rerun")
            loss.backward()
            if s.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip, foreach=False)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.losses.append(float(loss.detach()))
            advance(1, unit=f"steps, loss {state.losses[-1]:.4f}")
            if checkpoint_dir is not None and checkpoint_every and state.step % checkpoint_every == 0 and state.step < s.steps:
                save_state(checkpoint_dir, peft_model, optimizer, state, s)
            if on_step is not None:
                on_step(state.step)
    log.info("finetune: %d steps (%d this session) in %.1f s; loss %.4f -> %.4f", s.steps,
             s.steps - (state.resumed_from or 0), time.perf_counter() - t0, state.losses[0], state.losses[-1])
    merged = merge()
    merged.eval()
    return merged, state

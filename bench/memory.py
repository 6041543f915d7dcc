"""Peak memory of a Wanda prune, in memory and in offload mode, relative to the weight bytes.

    # a random-weight Llama with >= 3 GB of float32 weights, written shard by shard
    python bench/memory.py build /tmp/tp-big --layers 16
    flock /tmp/truthprune-heavy.lock python bench/memory.py compare /tmp/tp-big --nsamples 8 --seqlen 256
    flock /tmp/truthprune-heavy.lock python bench/memory.py compare smollm2-135m --nsamples 64 --seqlen 512
    rm -rf /tmp/tp-big

``compare`` runs each mode in a fresh child process (``measure``) so the peaks do not mix, and
reports peak RSS (``ru_maxrss``), the RSS right after importing torch/transformers (the floor
any mode pays), the checkpoint's weight bytes, peak/weights, and whether both modes chose the
same masks (a digest of every prunable weight's zero pattern, computed tensor by tensor).
``build`` never holds more than one decoder layer: it creates the model skeleton on the meta
device and writes each layer's random tensors to its own shard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


# --------------------------------------------------------------------------- build


def build(out: Path, layers: int, hidden: int, intermediate: int, vocab: int, seed: int) -> None:
    import torch
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                      num_attention_heads=hidden // 128, num_key_value_heads=max(1, hidden // 512), head_dim=128,
                      max_position_embeddings=4096, tie_word_embeddings=False)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for name, p in skeleton.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:3]) if ".layers." in name else name  # one shard per layer, one per outer tensor
        groups.setdefault(key, []).append((name, tuple(p.shape)))
    out.mkdir(parents=True, exist_ok=False)
    gen = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for k, (_, members) in enumerate(groups.items(), start=1):
        shard = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name, shape in members:
            if len(shape) == 1:  # norms
                tensors[name] = torch.ones(shape)
            else:
                tensors[name] = torch.randn(shape, generator=gen) * 0.02
            weight_map[name] = shard
            total += tensors[name].numel() * 4
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        del tensors
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    cfg.save_pretrained(out)
    print(f"wrote {out}: {total / 1e9:.2f} GB of float32 weights in {len(groups)} shards, peak RSS {peak_rss_bytes() / 1e9:.2f} GB")


# --------------------------------------------------------------------------- measure (child)


def _digest_update(h, w) -> None:
    h.update((w == 0).contiguous().numpy().tobytes())


def measure(model: str, mode: str, nsamples: int, seqlen: int, batch_size: int) -> dict:
    import torch  # noqa: F401  (import cost belongs to the floor)
    import transformers  # noqa: F401

    import truthprune
    from truthprune import resolve_model_path

    floor = rss_bytes()
    path, _ = resolve_model_path(model)
    from truthprune import CheckpointReader

    reader = CheckpointReader(path)
    weight_bytes = reader.total_bytes()
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(path).vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (nsamples, seqlen), generator=g)
    calib = truthprune.CalibrationSamples(ids, torch.ones_like(ids))
    reg = truthprune.get_registry()
    pruner, allocator = reg.create("pruner", "wanda"), reg.create("allocator", "uniform")
    h = hashlib.blake2b(digest_size=16)
    t0 = time.perf_counter()
    if mode == "memory":
        from transformers import AutoModelForCausalLM

        dense = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()  # what load_model does, no tokenizer
        dense.config.use_cache = False
        truthprune.prune_model(dense, calib, pruner, allocator, 0.5, batch_size=batch_size, quiet=True)
        elapsed = time.perf_counter() - t0
        for layer in truthprune.decoder_layers(dense):
            for _, lin in sorted(truthprune.prunable_linears(layer).items()):
                _digest_update(h, lin.weight.detach())
    else:
        from truthprune import prune_checkpoint

        with tempfile.TemporaryDirectory(dir=os.environ.get("TP_BENCH_TMP")) as tmp:
            prune_checkpoint(model, Path(tmp) / "out", calib, pruner, allocator, 0.5, batch_size=batch_size, quiet=True,
                             dtype="float32")
            elapsed = time.perf_counter() - t0
            out = CheckpointReader(Path(tmp) / "out")
            skeleton_layers = _layer_linear_keys(out.keys())
            for keys in skeleton_layers:
                for key in keys:
                    _digest_update(h, out.get(key))
    return {"mode": mode, "peak_rss": peak_rss_bytes(), "import_floor_rss": floor, "weight_bytes": weight_bytes,
            "mask_digest": h.hexdigest(), "prune_s": elapsed}


def _layer_linear_keys(keys: list[str]) -> list[list[str]]:
    """Prunable weight names per layer, in the order the in-memory digest uses (sorted names)."""
    by_layer: dict[int, list[str]] = {}
    for k in keys:
        parts = k.split(".")
        if "layers" in parts and k.endswith("proj.weight"):
            i = int(parts[parts.index("layers") + 1])
            by_layer.setdefault(i, []).append(k)
    return [sorted(by_layer[i]) for i in sorted(by_layer)]


# --------------------------------------------------------------------------- compare (parent)


def compare(model: str, nsamples: int, seqlen: int, batch_size: int, out_json: str | None) -> None:
    rows = []
    for mode in ("offload", "memory"):
        cmd = [sys.executable, __file__, "measure", model, "--mode", mode, "--nsamples", str(nsamples),
               "--seqlen", str(seqlen), "--batch-size", str(batch_size)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    gb = 1e9
    print(f"{model}: {rows[0]['weight_bytes'] / gb:.2f} GB of weights, calibration {nsamples} x {seqlen}, batch size {batch_size}")
    print(f"{'mode':8s} {'peak RSS':>10s} {'peak/weights':>13s} {'import floor':>13s} {'prune time':>11s}")
    for r in rows:
        print(f"{r['mode']:8s} {r['peak_rss'] / gb:9.2f}G {r['peak_rss'] / r['weight_bytes']:13.3f} "
              f"{r['import_floor_rss'] / gb:12.2f}G {r['prune_s']:10.1f}s")
    same = rows[0]["mask_digest"] == rows[1]["mask_digest"]
    print(f"masks identical in both modes: {same}")
    if out_json:
        Path(out_json).write_text(json.dumps({"model": model, "nsamples": nsamples, "seqlen": seqlen,
                                              "batch_size": batch_size, "rows": rows, "masks_identical": same}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write a random-weight Llama checkpoint shard by shard")
    b.add_argument("out", type=Path)
    b.add_argument("--layers", type=int, default=16)
    b.add_argument("--hidden", type=int, default=2048)
    b.add_argument("--intermediate", type=int, default=5632)
    b.add_argument("--vocab", type=int, default=32000)
    b.add_argument("--seed", type=int, default=0)
    for name in ("measure", "compare"):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("--nsamples", type=int, default=8)
        p.add_argument("--seqlen", type=int, default=256)
        p.add_argument("--batch-size", type=int, default=2)
        if name == "measure":
            p.add_argument("--mode", choices=("memory", "offload"), required=True)
        else:
            p.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.out, args.layers, args.hidden, args.intermediate, args.vocab, args.seed)
    elif args.cmd == "measure":
        print(json.dumps(measure(args.model, args.mode, args.nsamples, args.seqlen, args.batch_size)))
    else:
        compare(args.model, args.nsamples, args.seqlen, args.batch_size, args.json)


if __name__ == "__main__":
    main()

"""docs/results.md "Structured pruning": SmolLM2-135M at 20 % and 30 % of MLP+attention parameters,
every importance, before and after LoRA recovery, in priority order, resumable.

    flock /tmp/truthprune-heavy.lock python bench/structured_measurements.py [--out runs/structured]
        [--budget SECONDS] [--only entropy-30,taylor-ce-30]

Per model (each step a plain CLI command, logged with its wall time to OUT/steps.log; a step whose
output exists is skipped, so an interrupted run continues where it stopped):
  prune    `truthprune prune --pruner structured --importance I --sparsity S --save` (docs/results.md
           calibration: WikiText-2 valid.txt, 32 x 512, seed 0; importances are cached per weights,
           so the 20 % model reuses the 30 % model's scores)
  ppl      `truthprune eval ppl`, first 16 windows of WikiText-2 test.txt (the retention benchmark's
           protocol, dense 30.03; 64 windows would take four times as long per model)
  probe    `truthprune probe`, logreg on cities + neg_cities of the shared statements (held-out,
           entity-grouped split, seed 0): best-layer accuracy
  tqa      `truthprune eval truthfulqa --limit 150` (the first 150 held-out questions; the
           retention benchmark's subset: dense MC1 0.187, MC2 0.354)
  lora     `truthprune finetune` (rank 8, alpha 16, 30 steps of 2 x 256-token WikiText valid
           windows, lr 1e-3, seed 0), then the same three evaluations of the merged model
`bench/structured_speed.py` times the 30 % entropy checkpoint against the dense model in one
process (speed depends on the shapes only, which all importances share). Jobs run in priority
order (entropy vs taylor-ce at 30 %, their LoRA recovery, then the rest); `--budget` stops
starting new steps after that many seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

D = "../shared/data"
CAL = (f"--calibration wikitext2 --calibration-opt path={D}/wikitext-2/valid.txt --nsamples 32 --seqlen 512 "
       "--seed 0 --quiet --overwrite")
LORA = (f"--calibration wikitext2 --calibration-opt path={D}/wikitext-2/valid.txt --nsamples 64 --seqlen 256 "
        "--batch-size 2 --steps 30 --lr 1e-3 --warmup 3 --rank 8 --alpha 16 --checkpoint-every 10 --seed 0 --quiet")


def evaluations(model: str, out: str) -> list[tuple[str, str, str]]:
    """(name, command, output file) of the three evaluations of one saved model."""
    return [
        ("ppl", f"truthprune eval ppl --model {model} --data {D}/wikitext-2/test.txt --seqlen 512 --max-windows 16 "
                f"--json > {out}.ppl.json", f"{out}.ppl.json"),
        ("probe", f"truthprune probe --model {model} --probe logreg --truth-data {D}/truth_statements "
                  f"--truth-datasets cities,neg_cities --truth-max-per-set 0 --seed 0 --out {out}.probe.json --overwrite "
                  f"> {out}.probe.txt",
         f"{out}.probe.json"),
        ("tqa", f"truthprune eval truthfulqa --model {model} --data {D}/truthfulqa/TruthfulQA.csv --limit 150 "
                f"--json > {out}.tqa.json", f"{out}.tqa.json"),
    ]


class Steps:
    def __init__(self, out: str, budget: float):
        self.out, self.budget, self.t0 = out, budget, time.time()
        self.log = open(os.path.join(out, "steps.log"), "a")

    def __call__(self, name: str, cmd: str, output: str) -> bool:
        if os.path.exists(output) and os.path.getsize(output) > 0:
            return True
        if time.time() - self.t0 > self.budget:
            print(f"{time.strftime('%T')} SKIP {name}: budget spent", file=self.log, flush=True)
            return False
        t = time.time()
        rc = subprocess.run(cmd, shell=True).returncode
        print(f"{time.strftime('%T')} rc={rc} {time.time() - t:.0f}s {name}: {cmd}", file=self.log, flush=True)
        if rc != 0 and os.path.exists(output) and not os.path.isdir(output):
            os.remove(output)  # a failed step leaves no half-written result to be mistaken for one
        return rc == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/structured")
    ap.add_argument("--models", default="/tmp/truthprune-structured", help="where checkpoints go (large)")
    ap.add_argument("--budget", type=float, default=3600.0)
    ap.add_argument("--only", default="", help="comma-separated IMPORTANCE-PERCENT tags (default: all, in priority order)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.models, exist_ok=True)
    step = Steps(args.out, args.budget)
    # priority order: the seed's claim (entropy vs taylor-ce at 30 %, before and after LoRA) first
    jobs = ["entropy-30", "taylor-ce-30", "entropy-30+lora", "taylor-ce-30+lora", "magnitude-30", "wanda-sum-30",
            "entropy-20", "taylor-ce-20", "magnitude-20", "wanda-sum-20", "magnitude-30+lora", "wanda-sum-30+lora",
            "entropy-20+lora", "taylor-ce-20+lora", "magnitude-20+lora", "wanda-sum-20+lora"]
    if args.only:
        jobs = [j for j in jobs if j.split("+")[0] in args.only.split(",")]
    dense = os.path.join(args.out, "dense")
    for name, cmd, output in evaluations("smollm2-135m", dense):
        step(f"dense {name}", cmd, output)
    for job in jobs:
        tag = job.split("+")[0]
        imp, pct = tag.rsplit("-", 1)
        ckpt = os.path.join(args.models, tag)
        if job.endswith("+lora"):
            if not os.path.isdir(ckpt):
                continue
            lora_dir, res = ckpt + "-lora", os.path.join(args.out, tag + "-lora")
            cmd = f"truthprune finetune --model {ckpt} --save {lora_dir} --overwrite {LORA} > {res}.finetune.txt 2>&1"
            if not step(f"{tag} lora", cmd, os.path.join(lora_dir, "config.json")):
                continue
            for name, ecmd, output in evaluations(lora_dir, res):
                step(f"{tag}-lora {name}", ecmd, output)
            continue
        res = os.path.join(args.out, tag)
        prune = (f"truthprune prune --pruner structured --importance {imp} --sparsity 0.{pct} "
                 f"--pruner-opt micro_batch=4 {CAL} --save {ckpt} > {res}.prune.txt 2>&1")
        if not step(f"{tag} prune", prune, os.path.join(ckpt, "config.json")):
            continue
        for name, cmd, output in evaluations(ckpt, res):
            step(f"{tag} {name}", cmd, output)
        if tag == "entropy-30":  # the speed comparison needs only the shapes: time it as soon as they exist
            speed = os.path.join(args.out, "speed.json")
            step("speed", f"python bench/structured_speed.py --pruned {ckpt} --repeats 5 --threads 1 "
                          f"--json {speed} > {speed}.txt 2>&1", speed)
    print(f"{time.strftime('%T')} done in {time.time() - step.t0:.0f}s", file=step.log, flush=True)


if __name__ == "__main__":
    main()

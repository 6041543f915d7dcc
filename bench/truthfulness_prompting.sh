#!/bin/bash
# The "Truthfulness under prompting" table of docs/results.md: dense, Wanda 50 %, TPLO 50 %, GPTQ 4-bit,
# RTN 4-bit, Wanda 50 % + GPTQ 4-bit, GPTQ 3-bit on SmolLM2-135M. Each compressed model is pruned /
# quantized with `truthprune prune --save` (the results.md calibration protocol), evaluated with
# `truthprune eval truthfulness --baseline smollm2-135m` (the dense result is cached), then deleted.
# Heavy: run it as   flock /tmp/truthprune-heavy.lock bench/truthfulness_prompting.sh
# Then:              python bench/truthfulness_table.py   (markdown tables with Wilson 95 % intervals)
# LIMIT (items per dimension, default 48) and BUDGET (seconds after which no new model is started,
# default 720) come from the environment. GPTQ 3-bit and Wanda + GPTQ 4-bit also get the docs/results.md
# perplexity (64 WikiText-2 test windows) before their checkpoint is deleted.
set -u
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-48}
OUT=${OUT:-runs/truthfulness}
SAVE=${SAVE:-/tmp/truthprune-truthfulness}
D=../shared/data
mkdir -p "$OUT" "$SAVE"
CAL="--calibration wikitext2 --calibration-opt path=$D/wikitext-2/valid.txt --nsamples 32 --seqlen 512 --device cpu --quiet --overwrite"
EV="--truth-data $D/truth_statements --truthfulqa-data $D/truthfulqa/TruthfulQA.csv --limit $LIMIT --device cpu"
log() { echo "$(date +%T) $*" | tee -a "$OUT/heavy.log"; }
t() { local s; s=$(date +%s); "$@"; local rc=$?; log "rc=$rc $(( $(date +%s) - s ))s: $*"; return $rc; }
START=$(date +%s)
# a model whose result file exists is skipped, so a run cut short by BUDGET continues where it stopped
[ -s "$OUT/dense.json" ] || t truthprune eval truthfulness --model smollm2-135m $EV --out "$OUT/dense.json" --plot "$OUT/dense.png" > "$OUT/dense.txt" 2>&1 || exit 1
SPECS=(
  "wanda:--pruner wanda --sparsity 0.5"
  "tplo:--pruner tplo --sparsity 0.5 --truth-data $D/truth_statements"
  "gptq4:--pruner magnitude --sparsity 0 --quantizer gptq --bits 4 --group-size 128"
  "rtn4:--pruner magnitude --sparsity 0 --quantizer rtn --bits 4 --group-size 128"
  "wanda-gptq4:--pruner wanda --sparsity 0.5 --quantizer gptq --bits 4 --group-size 128"
  "gptq3:--pruner magnitude --sparsity 0 --quantizer gptq --bits 3 --group-size 128"
)
for spec in "${SPECS[@]}"; do
  name=${spec%%:*}; args=${spec#*:}
  if [ -s "$OUT/$name.json" ]; then log "have $name"; continue; fi
  if [ $(( $(date +%s) - START )) -gt "${BUDGET:-720}" ]; then log "budget spent: skipping $name and the rest"; break; fi
  t truthprune prune $args $CAL --save "$SAVE/$name" > "$OUT/$name.prune.txt" 2>&1 || continue
  t truthprune eval truthfulness --model "$SAVE/$name" --baseline smollm2-135m $EV --out "$OUT/$name.json" --plot "$OUT/$name.png" > "$OUT/$name.txt" 2>&1
  case $name in gptq3|wanda-gptq4)  # their perplexity is not in docs/results.md "Quantization" yet
    t truthprune eval ppl --model "$SAVE/$name" --data $D/wikitext-2/test.txt --seqlen 512 --max-windows 64 --json > "$OUT/$name.ppl.json" 2> "$OUT/$name.ppl.err";;
  esac
  rm -rf "${SAVE:?}/$name"
done
log done

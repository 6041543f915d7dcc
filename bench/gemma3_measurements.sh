#!/bin/bash
# Issue 11's measurements on the real Gemma 3 270M (docs/results.md "Gemma 3 270M"), in one go.
# Heavy (real models, ~10 min on 2 CPU cores): run it under the machine's heavy-job lock, e.g.
#   flock /tmp/truthprune-heavy.lock bash bench/gemma3_measurements.sh OUTDIR
# Needs `make setup-gemma` and ../shared/data. Writes JSON/logs to OUTDIR (default /tmp/gemma3).
set -u
OUT=${1:-/tmp/gemma3}
D=../shared/data
mkdir -p "$OUT"
step() { echo "=== $1 $(date +%T)"; }
step "1 eval ppl gemma3-270m, 16 windows (first use also reassembles and converts the GGUF: see 'converted in')"
/usr/bin/time -f "WALL %e s" truthprune -v eval ppl --model gemma3-270m --data $D/wikitext-2/test.txt --max-windows 16 \
  --batch-size 2 --json > "$OUT/gemma_ppl.json" 2> "$OUT/gemma_ppl.err"
step "2 the same windows ([BOS] + 511 tokens) with plain transformers"
python bench/bos_ppl_check.py --model gemma3-270m --data $D/wikitext-2/test.txt --windows 16 > "$OUT/gemma_plain.json"
step "3 Wanda 50 %, 32 x 512 WikiText calibration, ppl on 16 windows, logreg probe on cities"
/usr/bin/time -f "WALL %e s" truthprune run --model gemma3-270m --pruner wanda --sparsity 0.5 --calibration wikitext2 \
  --calibration-opt path=$D/wikitext-2/valid.txt --nsamples 32 --seqlen 512 --ppl-data $D/wikitext-2/test.txt \
  --ppl-max-windows 16 --truth-data $D/truth_statements --truth-datasets cities --truth-max-per-set 0 --eval ppl,probe --batch-size 4 \
  --out "$OUT/gemma3-wanda" --overwrite --quiet > "$OUT/gemma_run.log" 2>&1
step "4 SmolLM2 dense perplexity under --bos auto (docs/results.md protocol: 64 windows; was 26.79)"
truthprune eval ppl --model smollm2-135m --data $D/wikitext-2/test.txt --max-windows 64 --json > "$OUT/smol_ppl.json"
step done

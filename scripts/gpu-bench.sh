#!/usr/bin/env bash
# Training throughput on a GPU machine against the same machine's CPU: `trainer bench` on the default ViT and on
# MiniLM-L6, then a whole default ViT build (pretrain + build) and the default MiniLM build on MR, each on the GPU
# through burn-wgpu (`--device auto`: Vulkan on Linux) and on the CPU (`--device cpu`). Writes one JSON line per
# measurement to OUT/gpu-bench.jsonl and prints a table of samples/s with each figure's ratio to the CPU's.
#
#   scripts/gpu-bench.sh TRAINER OUT
#
# TRAINER: a release build (`cargo build --release -p trainer`; its default features include wgpu).
# The MiniLM rows need the encoder and the MR corpus in the trainer's cache (`trainer fetch minilm`, `trainer fetch
# mr`); a GPU machine without network gets a copy of that cache through S3T_CACHE. Without it they are skipped.
# Where no hardware adapter is usable (no Vulkan loader or driver), `auto` says so in a notice and runs on the CPU:
# each row says which device ran it. The GPU rows use the stacked figure (one batched computation of many runs), the CPU
# rows the threaded one (one run per core), each backend's best. On a 2-core machine without a GPU (every row on
# the CPU) it took 16 minutes beside another job before the MiniLM builds were added (about 11 minutes each there).
set -euo pipefail
T=${1:?usage: gpu-bench.sh TRAINER OUT}
OUT=${2:?usage: gpu-bench.sh TRAINER OUT}
mkdir -p "$OUT"
LOG="$OUT/gpu-bench.jsonl"
: >"$LOG"
record() { # record WHAT ASKED < JSON
  python3 -c 'import json,sys; r=json.load(sys.stdin); r["what"]=sys.argv[1]; r["asked"]=sys.argv[2]; print(json.dumps(r))' "$1" "$2" >>"$LOG"
}
minilm=0
if "$T" fetch minilm --quiet >/dev/null 2>&1 && "$T" fetch mr --quiet >/dev/null 2>&1; then minilm=1; fi
for d in auto cpu; do
  record vit-bench "$d" < <("$T" bench --throughput-only --samples 4096 --device "$d" --json)
  if ((minilm)); then
    record minilm-bench "$d" < <("$T" bench --backbone minilm --data mr --max-tokens 64 --samples 512 \
      --throughput-only --device "$d" --json)
  fi
done
for d in auto cpu; do
  rm -rf "$OUT/vit-$d"
  "$T" pretrain --out "$OUT/vit-$d" --device "$d" --quiet >/dev/null
  record vit-build "$d" < <("$T" build --out "$OUT/vit-$d" --device "$d" --json)
  if ((minilm)); then
    # The default text build (MiniLM-L6 on MR, every layer adapted).
    rm -rf "$OUT/mr-$d"
    record mr-build "$d" < <("$T" build --backbone minilm --data mr --out "$OUT/mr-$d" --device "$d" --json)
  fi
done
python3 - "$LOG" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]

def figures(r):
    if r["what"].endswith("-build"):
        return {"build": r["train_samples_per_s"]}
    best = lambda k: r.get(f"{k}_threaded_samples_per_s") or r[f"{k}_batched_samples_per_s"]
    return {"every adapter": best("train"), "node step": best("node_train")}

cpu = {r["what"]: figures(r) for r in rows if r["asked"] == "cpu"}
print("| model | step | --device | ran on | samples/s | ratio to the CPU |")
print("|---|---|---|---|---|---|")
for r in rows:
    for step, value in figures(r).items():
        ref = cpu.get(r["what"], {}).get(step)
        ratio = f"{value / ref:.1f}×" if ref else "–"
        print(f"| {r['what']} | {step} | {r['asked']} | {r['device']} | {value:,.0f} | {ratio} |")
PY

#!/usr/bin/env bash
# From a fresh clone: set up, synthesize a 12-class TTS corpus, train configs/quickstart.yaml, test it on
# held-out voices. Re-running resumes or reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
corpus=data/synth_gsc12
run=runs/quickstart

kws synth --words gsc-v2-12 --clips-per-voice 3 --out "$corpus"
if [ -f "$run/config.yaml" ]; then
  kws fit --config configs/quickstart.yaml --data.root "$corpus" --ckpt_path last   # finish or reuse the run
else
  kws fit --config configs/quickstart.yaml --data.root "$corpus"
fi
kws test --config "$run/config.yaml" --ckpt_path "$run/checkpoints/best.ckpt"
echo
echo "checkpoint: $run/checkpoints/best.ckpt"
echo "use it:     .venv/bin/kws test --config $run/config.yaml --ckpt_path $run/checkpoints/best.ckpt --data.root <folder>"

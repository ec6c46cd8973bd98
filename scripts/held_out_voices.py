"""Where a TTS-trained model's held-out accuracy goes (docs/tts_corpus.md, "How good is a model trained on TTS
voices?").

Prints the model's accuracy on the command words of a ``kws synth`` corpus's held-out voices, per voice family
(the unit of the split rule), then on the same clips with the corpus's background noise mixed in at each
``--snr-db`` (per clip: the word's RMS over the noise's, as ``kws make-stream`` sets a stream's), with the share
of them taken for ``_unknown_``. Deterministic for a ``--seed``.

Example:
    python scripts/held_out_voices.py --ckpt runs/quickstart/checkpoints/best.ckpt --corpus data/synth_gsc12
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from pipeline.console import run_script
from pipeline.data.speech_commands import SPLITS, UNKNOWN, is_word, scan
from pipeline.data.streams import word_extent
from pipeline.data.synth import available_voices
from pipeline.errors import KWSError
from pipeline.runtime.audio import clip_samples, fit_length, read_audio
from pipeline.runtime.streaming import Classifier, window_probs
from pipeline.train.model import load_model

SNRS_DB = (20.0, 10.0, 5.0)
BATCH = 64


def predict(model: Classifier, clips: np.ndarray) -> np.ndarray:
    """The top label index of each clip."""
    return np.concatenate([window_probs(model, model.features(clips[i : i + BATCH])).argmax(1)
                           for i in range(0, len(clips), BATCH)])  # fmt: skip


def with_noise(clips: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Each clip plus a random stretch of ``noise`` scaled to ``snr_db`` under the clip's word."""
    out = clips.copy()
    for clip in out:
        a, b = word_extent(clip)
        start = rng.integers(0, len(noise) - len(clip) + 1)
        piece = noise[start : start + len(clip)]
        level = np.sqrt(np.mean(np.square(clip[a:b], dtype=np.float64))) / 10 ** (snr_db / 20)
        clip += piece * np.float32(level / max(np.sqrt(np.mean(np.square(piece, dtype=np.float64))), 1e-12))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint written by kws fit")
    parser.add_argument("--corpus", required=True, help="corpus made by kws synth (its list files give the split)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="voices to score (default: test, held out)")
    parser.add_argument(
        "--snr-db",
        type=float,
        nargs="+",
        default=SNRS_DB,
        help=f"speech-to-noise ratios to mix the noise at (default: {' '.join(map(str, SNRS_DB))})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the noise stretches (default: 0)")
    args = parser.parse_args()

    model = load_model(args.ckpt)
    corpus = scan(args.corpus)
    labels = list(model.labels)
    commands = [label for label in labels if is_word(label)]
    clips = [c for c in corpus.clips if c.word in commands and corpus.split_of(c, 10.0, 10.0) == args.split]
    if not clips:
        raise KWSError(f"{args.corpus} holds no clips of {', '.join(commands)} in its {args.split} split")
    if not corpus.noise_files:
        raise KWSError(f"{args.corpus} has no background-noise files to mix in")
    window = clip_samples(model.sample_rate)
    audio = np.stack([fit_length(read_audio(c.path, model.sample_rate), window) for c in clips])
    truth = np.array([labels.index(c.word) for c in clips])

    family = {v.id: v.family for v in available_voices()}
    families = [family.get(c.speaker, c.speaker) for c in clips]
    clean = predict(model, audio)
    right = clean == truth
    hits, totals = Counter(f for f, ok in zip(families, right) if ok), Counter(families)
    print(f"\n{args.ckpt} on the command words of {args.corpus}'s {args.split} voices\n")
    print("| voice family | accuracy | clips |\n| --- | --- | --- |")
    for name in sorted(totals):
        print(f"| {name} | {hits[name] / totals[name]:.1%} | {totals[name]} |")
    print(f"| all | {right.mean():.1%} | {len(clips)} |")

    noise = np.concatenate([read_audio(p, model.sample_rate) for p in corpus.noise_files])
    rng = np.random.default_rng(args.seed)
    print("\n| noise mixed in | accuracy | taken for _unknown_ |\n| --- | --- | --- |")
    unknown = labels.index(UNKNOWN) if UNKNOWN in labels else -1  # a task without it: nothing is taken for it
    for name, pred in [
        ("none", clean),
        *((f"{snr:g} dB", predict(model, with_noise(audio, noise, snr, rng))) for snr in args.snr_db),
    ]:
        print(f"| {name} | {np.mean(pred == truth):.1%} | {np.mean(pred == unknown):.1%} |")


if __name__ == "__main__":
    run_script(main)

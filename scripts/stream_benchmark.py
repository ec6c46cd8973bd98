"""The stream benchmark (pipeline/benchmark.py): each model's DET curve on speakers it never trained on.

For each ``--model NAME=PATH`` (a checkpoint, an export or a bundled model's name) it prints, threshold by
threshold, the share of command words found on the real-speaker streams (20, 10 and 5 dB) and the held-out TTS
voices' stream, and the false accepts per hour on each kind of negative audio: real isolated other words, real
running speech (LibriSpeech), TTS running speech, the official noise. The settings other than the threshold are
each model's own operating point unless given. ``--png`` draws the curves. Streams and figures are kept in
``--out``: a rerun resumes.

``--tune-budget N`` first chooses the operating point of each model that carries none (a fold model) as
``kws evaluate-stream --tune --fa-budget N`` would, on development audio apart from every measured stream
(``pipeline.benchmark.build_dev``: the TTS corpus's validation voices, or with ``--dev-real`` the validation
speakers of ``speech_commands_train_speakers`` and ``speech_commands_more_speakers``, whom no recipe trains on; the
validation voices' running speech and the training half of the LibriSpeech speakers), and sweeps around it.

A PATH holding ``{fold}`` is one model per cross-validation fold (``scripts/crossval.py``'s): each fold's model
is scored on its own fold's speakers only, and the figures are pooled over ``--folds`` folds.

Example (the quickstart model, trained on TTS voices alone, so every real speaker is unseen)::

    python scripts/stream_benchmark.py --model quickstart=runs/quickstart/checkpoints/best.ckpt \\
        --real ../shared/data --corpus data/synth_gsc12 --speech data/tts_speech --png docs/det_quickstart.png
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from pipeline.benchmark import (
    ISOLATED,
    NOISE,
    POSITIVE,
    RUNNING,
    TTS_SPEECH,
    BenchStream,
    build_dev,
    build_streams,
    clip_agreement,
    model_key,
    pooled,
    run_benchmark,
)
from pipeline.console import run_script
from pipeline.data.streams import read_truth, truth_path
from pipeline.errors import KWSError
from pipeline.files import write_text
from pipeline.runtime.audio import read_audio
from pipeline.runtime.decision import Settings
from pipeline.runtime.spotter import open_model
from pipeline.runtime.streaming import Classifier, operating_point, settings_for
from pipeline.stream_eval import DET_THRESHOLDS, TUNE_PATIENCE, DetPoint, StreamStats, plot_det, tune

NEGATIVE_KINDS = (ISOLATED, RUNNING, TTS_SPEECH, NOISE)
TARGET = "real commands 10 dB"  # the positive stream of the drawn curves
DEV_SPEAKERS = ("speech_commands_train_speakers", "speech_commands_more_speakers")  # validation speakers: --dev-real


def load(path: str) -> tuple[Classifier, str]:
    """A model (an export, a checkpoint or a bundled model's name: :func:`~pipeline.runtime.spotter.open_model`) and the
    file it runs from, which its figures are kept under."""
    model, card = open_model(path)
    return model, str(card.export_path) if card else path


def score(args: argparse.Namespace, path: str, folds: list[int | None], thresholds: tuple[float, ...]):
    """Per stream and threshold, the statistics pooled over ``folds`` (one model per fold); the streams; the
    settings of the sweep (the last fold's) and its thresholds (with every fold's tuned one)."""
    real = Path(args.real) if args.real else None
    models = []
    for fold in folds:
        model, file = load(path.format(fold=fold))
        settings = settings_for(model, None, args.stride_ms, args.smooth_ms, args.suppression_ms, None, args.patience)
        if args.tune_budget is not None and not operating_point(model):
            settings = tuned(args, model, file, real)
            print(f"{file}: tuned within {args.tune_budget:g} false accepts per hour: {settings.describe()}")
            thresholds = tuple(sorted({*thresholds, settings.threshold}))
        models.append((fold, model, file, settings))
    total: dict[str, list[StreamStats]] = {}
    own: dict[str, StreamStats] = {}  # each fold's model at its own threshold, pooled
    for fold, model, file, settings in models:
        streams = build_streams(
            Path(args.out), real / "speech_commands_v0.02_test_part_a" if real else None,
            real / "real_speech_without_commands" / "librispeech_test-other" if real else None,
            real / "speech_commands_background_noise" if real else None,
            Path(args.corpus) if args.corpus else None, Path(args.speech) if args.speech else None,
            fold, args.folds,
        )  # fmt: skip
        for name, stats in run_benchmark(model, file, settings, streams, Path(args.out), thresholds).items():
            total[name] = [a + b for a, b in zip(total[name], stats)] if name in total else stats
            at = stats[thresholds.index(settings.threshold)] if settings.threshold in thresholds else None
            if at is not None:
                own[name] = own[name] + at if name in own else at
    return total, own, streams, settings, thresholds


def tuned(args: argparse.Namespace, model, file: str, real: Path | None) -> Settings:
    """The operating point ``kws evaluate-stream --tune --fa-budget`` chooses on the development audio (kept in
    ``<out>/tuned.json`` by model file, budget and development stream, so a rerun does not search again)."""
    cache = Path(args.out) / "tuned.json"
    key = f"{model_key(file, Settings())}:{args.tune_budget:g}:{'real-validation' if args.dev_real else 'tts'}"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key in known:
        return Settings(**known[key])
    librispeech = real / "real_speech_without_commands" / "librispeech_test-other" if real else None
    stream, negatives = build_dev(Path(args.out), Path(args.corpus) if args.corpus else None,
                                  Path(args.speech) if args.speech else None, librispeech,
                                  [real / d for d in DEV_SPEAKERS] if real and args.dev_real else (),
                                  real / "speech_commands_background_noise" if real else None)  # fmt: skip
    audio = [read_audio(p, model.sample_rate) for p in sorted(negatives.rglob("*")) if p.is_file()]
    strides = (args.stride_ms,) if args.stride_ms else None
    ranked = tune(model, read_audio(stream, model.sample_rate), read_truth(truth_path(stream)), model.sample_rate,
                  strides_ms=strides, patience=TUNE_PATIENCE, negatives=audio, fa_budget=args.tune_budget)  # fmt: skip
    known = json.loads(cache.read_text()) if cache.exists() else {}
    write_text(cache, json.dumps({**known, key: ranked[0][0].to_dict()}, indent=1) + "\n")
    return ranked[0][0]


def table(name: str, total: dict[str, list[StreamStats]], own: dict[str, StreamStats], streams: list[BenchStream],
          thresholds: tuple[float, ...]) -> str:  # fmt: skip
    """The markdown DET table of one model: found per positive stream, false accepts per hour per negative kind,
    at each threshold and (last row) at each model's own operating point."""
    positives = [s.name for s in streams if s.kind == POSITIVE]
    kinds = [k for k in NEGATIVE_KINDS if any(s.kind == k for s in streams)]
    rows = [(f"{t:g}", {n: stats[i] for n, stats in total.items()}) for i, t in enumerate(thresholds)]
    rows.append(("own point", own))
    lines = [f"| {name}: threshold | " + " | ".join(f"found, {p}" for p in positives)
             + " | " + " | ".join(f"FA/h, {k}" for k in kinds) + " |",
             "| --- |" + " --- |" * (len(positives) + len(kinds))]  # fmt: skip
    for label, at in rows:
        found = [f"{at[p].percent(at[p].correct):.1f} %" for p in positives]
        fa = [f"{pooled({n: [x] for n, x in at.items()}, streams, k)[0].false_accepts_per_hour:.1f}" for k in kinds]
        lines.append(f"| {label} | " + " | ".join(found + fa) + " |")
    negatives = {k: pooled(total, streams, k) for k in kinds}
    lines.append(
        "\n("
        + ", ".join(f"{k}: {per[0].seconds / 60:.0f} min" for k, per in negatives.items())
        + "; command words: "
        + ", ".join(f"{p} {total[p][0].ground_truth}" for p in positives)
        + ")"
    )
    return "\n".join(lines)


def card_figures(
    path: str, folds: int, settings: Settings, total: dict[str, list[StreamStats]], own: dict[str, StreamStats],
    streams: list[BenchStream], thresholds: tuple[float, ...],
) -> dict:  # fmt: skip
    """A model's figures at its own operating point (each fold's model at its own; commands found at 10 dB, false
    accepts per hour of isolated words and of running speech) and its DET rows, for the model card."""

    def figures(at: dict[str, StreamStats]) -> dict:
        isolated = pooled({n: [x] for n, x in at.items()}, streams, ISOLATED)
        running = pooled({n: [x] for n, x in at.items()}, streams, RUNNING)
        return {
            "commands_found": at[TARGET].correct / at[TARGET].ground_truth if TARGET in at else None,
            "false_accepts_per_hour": isolated[0].false_accepts_per_hour if isolated else None,
            "running_speech_false_accepts_per_hour": running[0].false_accepts_per_hour if running else None,
        }

    rows = [{"threshold": t, **figures({n: stats[i] for n, stats in total.items()})} for i, t in enumerate(thresholds)]
    return {"model": path, "folds": folds, "settings": settings.to_dict(), "det": rows, **figures(own)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="a model to score (repeatable): checkpoint, export or bundled name; {fold} in PATH: "
                        "one model per fold")  # fmt: skip
    parser.add_argument("--real", help="the shared data folder (its test part A, LibriSpeech and noise folders)")
    parser.add_argument("--corpus", help="a kws synth corpus: its test voices' command stream")
    parser.add_argument("--speech", help="a kws synth-speech folder: its test voices' running speech")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of {fold} models (default: 5)")
    parser.add_argument("--out", default="runs/benchmark", help="where streams and figures are kept")
    parser.add_argument("--stride-ms", type=float, help="the sweep's stride (default: each model's own)")
    parser.add_argument("--smooth-ms", type=float, help="the sweep's smoothing (default: each model's own)")
    parser.add_argument("--suppression-ms", type=float, help="the sweep's suppression (default: each model's own)")
    parser.add_argument("--patience", type=int, help="the sweep's patience (default: each model's own)")
    parser.add_argument("--thresholds", help="comma-separated thresholds (default: the DET sweep's)")
    parser.add_argument("--tune-budget", type=float, metavar="N",
                        help="choose the operating point of each model that carries none within N false accepts per "
                        "hour on development audio (see above) and sweep around it")  # fmt: skip
    parser.add_argument("--dev-real", action="store_true",
                        help="with --tune-budget: the development stream of the validation speakers of "
                        f"{' and '.join('REAL/' + d for d in DEV_SPEAKERS)} (none of them measured or trained on) "
                        "instead of the TTS corpus's validation voices")  # fmt: skip
    parser.add_argument("--clips", help="a Speech Commands-layout folder of speakers the model never heard: also print "
                        "how many of its command clips kws transcribe names exactly, against kws predict")  # fmt: skip
    parser.add_argument("--summary", help="write each model's figures at its own operating point (the card of "
                        "scripts/ship_model.py) and its DET rows to this JSON file")  # fmt: skip
    parser.add_argument("--png", help="draw every model's curves (commands found at 10 dB against false accepts per "
                        "hour of isolated words and of running speech) into this PNG")  # fmt: skip
    args = parser.parse_args()
    for flag in ("real", "corpus", "speech"):
        if getattr(args, flag) and not Path(getattr(args, flag)).is_dir():
            raise KWSError(f"--{flag} {getattr(args, flag)} is not a folder")
    try:
        thresholds = tuple(float(t) for t in args.thresholds.split(",")) if args.thresholds else DET_THRESHOLDS
    except ValueError:
        raise KWSError(f"--thresholds must be comma-separated numbers, not {args.thresholds!r}") from None
    curves: dict[str, dict[str, list[DetPoint]]] = {ISOLATED: {}, RUNNING: {}}
    marks: dict[str, dict[str, DetPoint]] = {ISOLATED: {}, RUNNING: {}}
    summary: dict[str, dict] = {}
    for item in args.model:
        name, _, path = item.partition("=")
        if not path:
            raise KWSError(f"--model takes NAME=PATH, not {item!r}")
        folds = list(range(args.folds)) if "{fold}" in path else [None]
        total, own, streams, settings, swept = score(args, path, folds, thresholds)
        print(f"\n{name}: {path}; {settings.describe().split(', ', 1)[1]}"
              f"{f'; pooled over {len(folds)} folds' if len(folds) > 1 else ''}\n")  # fmt: skip
        print(table(name, total, own, streams, swept))
        if args.clips and len(folds) == 1:
            named, alone, labelled, count = clip_agreement(load(path)[0], settings, Path(args.clips))
            print(
                f"\n{args.clips}: of {count} command clips, kws transcribe names {named:.1%} exactly at the "
                f"operating point ({alone:.1%} without the clip rule); kws predict labels {labelled:.1%} right"
            )
        summary[name] = card_figures(path, len(folds), settings, total, own, streams, swept)
        target = next((s.name for s in streams if s.name == TARGET), None)
        for kind in curves:
            negatives = pooled(total, streams, kind)
            if target and negatives:
                curves[kind][name] = [DetPoint(replace(settings, threshold=t), {target: total[target][i]},
                                               {kind: negatives[i]}) for i, t in enumerate(swept)]  # fmt: skip
                marks[kind][name] = DetPoint(
                    settings, {target: own[target]}, {kind: pooled({n: [x] for n, x in own.items()}, streams, kind)[0]}
                )
    if args.summary:
        write_text(args.summary, json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.summary}")
    if args.png:
        for kind, models in curves.items():
            if models:
                out = Path(args.png).with_name(f"{Path(args.png).stem}_{kind.replace(' ', '_')}.png")
                plot_det(models, str(out), f"real commands at 10 dB against {kind} (unseen speakers)", marks[kind])
                print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_script(main)

"""Speaker-disjoint cross-validation on real speakers: the measure every recipe decision rests on.

The speakers of ``--real-test`` (the official test-archive layout, e.g. ``speech_commands_v0.02_test_part_a``)
are cut into ``--folds`` folds by a salted speaker hash (``data.split: fold``). For each experiment and fold a
model is trained with ``configs/real_12.yaml`` on the TTS corpus, every ``--real-train`` speaker and the other
folds' speakers, then

* tested on its own fold's speakers (``kws test``): accuracy, 12 classes;
* run through the stream benchmark (:mod:`pipeline.benchmark`) on its own fold's speakers, at the engine's
  default settings and several thresholds: the share of command words found on the 10 dB command stream, and the
  false accepts per hour (:attr:`pipeline.stream_eval.StreamStats.false_accepts`) on the fold's real other words
  strung into running speech (clean and at 10 dB), and on the measure half of the real running speech
  (LibriSpeech, unseen by every fold).

Learning-curve experiments (``curve-N``) train on the TTS corpus plus ``N`` speakers of ``--real-train`` only
and are tested on every speaker of ``--real-test`` (none of them trained on), once.

Results go to ``runs/crossval/results.json`` as each job ends (written atomically); a rerun skips finished
jobs and resumes interrupted trainings, so the script can be stopped and started at will. The table prints
mean ± standard deviation over folds.

Example:
    python scripts/crossval.py --synth data/synth_gsc12 \\
        --real-train ../shared/data/speech_commands_train_speakers \\
        --real-test ../shared/data/speech_commands_v0.02_test_part_a --experiments base,unknown-30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.benchmark import FOLD_SALT, FOLDS, VALIDATION_PERCENT
from pipeline.data.speech_commands import SILENCE, scan, which_fold
from pipeline.errors import KWSError
from pipeline.files import atomic_path, write_text
from pipeline.measure import read_confusion
from pipeline.runtime.streaming import THRESHOLD

REPO = Path(__file__).resolve().parents[1]

OUT = REPO / "runs" / "crossval"
BENCHMARK = REPO / "runs" / "benchmark"  # the stream benchmark's streams and figures (scripts/stream_benchmark.py's)
SALT = FOLD_SALT  # the official test archive's speakers all share one band of the unsalted hash
STREAM_MINUTES = 30.0  # of each stream per fold
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)  # detector thresholds the streams are scored at
# the default training budget of one job: epochs x batches of 64 clips (a quarter of real_12's 30 epochs)
EPOCHS, BATCHES = 15, 120
CURVE_SEED = 0  # which speakers a learning-curve subset takes


@dataclass(frozen=True)
class Experiment:
    """One row of the table: ``kws fit`` overrides on top of the cross-validation recipe (``configs/real_12.yaml``
    and the shipped recipe files of ``configs``, in order, then the fold's data, then ``args``)."""

    about: str
    args: tuple[str, ...] = ()
    speakers: int | None = None  # learning curve: this many --real-train speakers, no --real-test speakers
    configs: tuple[str, ...] = ()
    more_speakers: bool = False  # --real-more as a third real root after --real-train (split by speaker hash)


EXPERIMENTS = {
    "tts-only": Experiment("TTS corpus only (no real speaker)", speakers=0),
    "base": Experiment("real_12 recipe, TTS + all real data, weights 1:1:1"),
    "unknown-30": Experiment("base, real _unknown_ drawn up to 30 % of the words", ("--data.unknown_share=0.3",)),
    "weights-121": Experiment("base, weights 1:2:1 (more real training speakers)", ("--data.weights=[1, 2, 1]",)),
    "no-tts": Experiment("base without the TTS corpus (weight 0)", ("--data.weights=[0, 1, 1]",)),
    "speed": Experiment("base + speed perturbation 0.85-1.15", ("--data.augment.speed=[0.85, 1.15]",)),
    "mixup": Experiment("base + mixup (alpha 0.2)", ("--model.mixup=0.2",)),
    "shift-200": Experiment("base, time shift ±200 ms instead of ±100", ("--data.augment.time_shift_ms=200",)),
    "long": Experiment("base, twice the epochs", ("--trainer.max_epochs=30",)),
    "causal": Experiment(
        "long with the streaming (causal) MatchboxNet, trained after another clip",
        ("--trainer.max_epochs=30", "--model.model.causal=true"),
    ),
    "causal-alone": Experiment(
        "causal, each training clip alone (after zero padding)",
        ("--trainer.max_epochs=30", "--model.model.causal=true", "--model.stream_context=false"),
    ),
    "no-negatives": Experiment(
        "the bundled model's recipe until negatives: configs/kws12.yaml without them and with unknown-30 (base + "
        "unknown-30 + speed)",
        ("--data.negatives=null", "--data.unknown_share=0.3"),
        configs=("kws12.yaml",),
    ),
    "negatives-tts": Experiment(
        "no-negatives + TTS running speech and sounds as negatives (--speech)",
        ("--data.negatives=[{speech}]", "--data.unknown_share=0.3"),
        configs=("kws12.yaml",),
    ),
    "negatives-real": Experiment(
        "no-negatives + TTS running speech and the real running speech of the LibriSpeech training half as "
        "negatives (the bundled model before unknown-all)",
        ("--data.unknown_share=0.3",),
        configs=("kws12.yaml",),
    ),
    "kws12": Experiment(
        "the bundled model's recipe, configs/kws12.yaml: negatives-real with every real other word of the training "
        "speakers (unknown_share 1.0: unknown-all)",
        configs=("kws12.yaml",),
    ),
    "no-smoothing": Experiment(
        "kws12 without label smoothing (0.1 caps the word's target at 0.91, where the thresholds sit)",
        ("--model.label_smoothing=0.0",),
        configs=("kws12.yaml",),
    ),
    "more-speakers": Experiment(
        "kws12 + speech_commands_more_speakers (2,681 real clips, most of them yes, no, stop), drawn as if one "
        "folder with --real-train (weights by clip count: 0.67 and 0.33)",
        ("--data.weights=[1, 0.67, 0.33, 1]",),
        configs=("kws12.yaml",),
        more_speakers=True,
    ),
    "more-speakers-light": Experiment(
        "more-speakers with speech_commands_more_speakers at a quarter of the other real roots' weight (more-speakers "
        "found more yes, no and stop and fewer of the other words)",
        ("--data.weights=[1, 1, 0.25, 1]",),
        configs=("kws12.yaml",),
        more_speakers=True,
    ),
    "kws12-long": Experiment(
        "kws12 with twice the epochs (30; long gave base +2.1 points)",
        ("--trainer.max_epochs=30",),
        configs=("kws12.yaml",),
    ),
    "snr-noise": Experiment(
        "kws12 with the TTS corpus's background noise mixed at 0-20 dB SNR (instead of gains 0-0.1)",
        ("--data.augment.noise_snr_db=[0, 20]",),
        configs=("kws12.yaml",),
    ),
    "tcresnet14-1.5": Experiment(
        "base with TC-ResNet14-1.5",
        (
            "--model.model.name=tcresnet",
            "--model.model.size=14-1.5",
            "--model.features.n_mels=40",
            "--model.features.n_mfcc=40",
        ),
    ),  # fmt: skip
    "curve-25": Experiment("TTS + 25 real training speakers", speakers=25),
    "curve-100": Experiment("TTS + 100 real training speakers", speakers=100),
    "curve-400": Experiment("TTS + 400 real training speakers", speakers=400),
    "curve-all": Experiment("TTS + every real training speaker (740)", speakers=10**9),
}


def job_name(name: str, fold: int | None) -> str:
    return name if fold is None else f"{name}/fold{fold}"


def speaker_subset(root: Path, n: int) -> Path:
    """A folder of links to the clips of ``n`` speakers of ``root`` (chosen by salted hash), made once."""
    out = OUT / "subsets" / f"{root.name}-{n}"
    if out.is_dir():
        return out
    corpus = scan(root)
    speakers = sorted({c.speaker for c in corpus.clips}, key=lambda s: which_fold(f"{CURVE_SEED}:{s}", 10**6))
    chosen = set(speakers[:n])
    tmp = out.with_name(out.name + ".tmp")
    for clip in corpus.clips:
        if clip.speaker in chosen:
            link = tmp / clip.path.relative_to(root)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(clip.path.resolve())
    tmp.rename(out)
    return out


def fit_and_test(name: str, fold: int | None, args: argparse.Namespace, env: dict[str, str]) -> Path:
    """Train one job (resuming an interrupted one) and test it; return the checkpoint."""
    exp = EXPERIMENTS[name]
    run = Path("crossval") / job_name(name, fold)
    run_dir = REPO / "runs" / run
    budget = [f"--trainer.max_epochs={args.epochs}", f"--trainer.limit_train_batches={args.batches}"]
    common = [
        "--data.testing_percentage=0",
        f"--data.validation_percentage={VALIDATION_PERCENT:g}",
        f"--data.hash_salt={SALT}",
    ]
    if exp.speakers is None:
        roots = [args.synth, args.real_train, *([args.real_more] if exp.more_speakers else []), args.real_test]
        splits = ", ".join(["auto"] + ["hash"] * (len(roots) - 2) + ["fold"])
        data = [f"--data.root=[{', '.join(roots)}]", f"--data.split=[{splits}]",
                f"--data.weights=[{', '.join(['1'] * len(roots))}]", f"--data.folds={args.folds}",
                f"--data.fold={fold}"]  # fmt: skip
        test = [f"--data.root={args.real_test}", "--data.split=fold", f"--data.folds={args.folds}",
                f"--data.fold={fold}", f"--data.hash_salt={SALT}"]  # fmt: skip
    else:
        roots = [args.synth] + ([str(speaker_subset(Path(args.real_train), exp.speakers))] if exp.speakers else [])
        data = [f"--data.root=[{', '.join(roots)}]", f"--data.split=[auto{', hash' * (len(roots) - 1)}]",
                f"--data.weights=[{', '.join(['1'] * len(roots))}]"]  # fmt: skip
        test = [f"--data.root={args.real_test}", "--data.split=test"]
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    log = run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    kws = [sys.executable, "-m", "pipeline"]
    with open(log, "a") as out:
        if not (run_dir / "done").exists():
            resume = ["--ckpt_path=last"] if (run_dir / "checkpoints" / "last.ckpt").exists() else []
            recipe = [arg for name in ("real_12.yaml", *exp.configs)
                      for arg in ("--config", str(REPO / "configs" / name))]  # fmt: skip
            extra = [a.format(speech=args.speech) for a in exp.args]
            fit = [*kws, "fit", *recipe, f"--run={run}", *data, *common, *budget, *extra, *resume]  # fmt: skip
            if subprocess.run(fit, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"training {run} failed: see {log}")
            (run_dir / "done").touch()
        if subprocess.run([*kws, "test", f"--ckpt_path={ckpt}", *test], cwd=REPO, env=env, stdout=out,
                          stderr=subprocess.STDOUT).returncode:  # fmt: skip
            raise RuntimeError(f"testing {run} failed: see {log}")
    return ckpt


def librispeech_training(args: argparse.Namespace) -> Path:
    """The training half of the real running speech (the benchmark measures on the other half), made once."""
    from pipeline.benchmark import librispeech_half

    real = Path(args.real_test).parent / "real_speech_without_commands" / "librispeech_test-other"
    return librispeech_half(real, BENCHMARK, measured=False)


def stream_figures(ckpt: Path, fold: int | None, args: argparse.Namespace, noise: Path) -> dict[str, dict[str, float]]:
    """Per threshold: the share of command words found correctly on the fold's 10 dB command stream, and the false
    accepts per hour on its real other words (clean and 10 dB) and on the unseen real running speech; the
    engine's other settings at their defaults. Streams come from the stream benchmark (made once)."""
    import torch

    from pipeline.benchmark import ISOLATED, RUNNING, build_streams, pooled, run_benchmark
    from pipeline.runtime.streaming import settings_for
    from pipeline.train.model import load_model

    torch.set_num_threads(1)
    model = load_model(ckpt)
    real = Path(args.real_test).parent
    streams = build_streams(BENCHMARK, Path(args.real_test),
                            real / "real_speech_without_commands" / "librispeech_test-other",
                            noise, fold=fold, folds=args.folds)  # fmt: skip
    figures = run_benchmark(model, ckpt, settings_for(model), streams, BENCHMARK, THRESHOLDS)
    commands = next(s.name for s in streams if s.name == "real commands 10 dB")
    isolated, running = pooled(figures, streams, ISOLATED), pooled(figures, streams, RUNNING)
    return {f"{t:g}": {"commands_correct": figures[commands][i].correct / figures[commands][i].ground_truth,
                       "false_accepts_per_hour": isolated[i].false_accepts_per_hour,
                       "running_speech_false_accepts_per_hour": running[i].false_accepts_per_hour}
            for i, t in enumerate(THRESHOLDS)}  # fmt: skip


def _mean_sd(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    spread = f" ± {statistics.stdev(values) * scale:.1f}" if len(values) > 1 else ""
    return f"{statistics.mean(values) * scale:.1f}{unit}{spread}"


def summary(results: dict[str, dict[str, dict]], names: list[str], threshold: float) -> str:
    """The table of docs/accuracy.md: one row per experiment, mean ± standard deviation over folds, and the accuracy
    change against ``base`` on the same folds (paired: the folds differ more than most levers do)."""
    lines = ["| experiment | accuracy, unseen real speakers | vs base, same folds | command words found (10 dB stream) "
             "| false accepts / hour, other words | false accepts / hour, running speech | folds | clips |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    base = results.get("base", {})
    for name in names:
        folds = {f: r for f, r in results.get(name, {}).items() if "streams" in r}  # older entries lack streams
        if not folds:
            continue
        rows = list(folds.values())
        at = [r["streams"][f"{threshold:g}"] for r in rows]
        paired = [100 * (r["accuracy"] - base[f]["accuracy"]) for f, r in folds.items() if f in base]
        delta = f"{statistics.mean(paired):+.1f} points" if paired and name != "base" else "—"
        lines.append(
            f"| `{name}`: {EXPERIMENTS[name].about} | {_mean_sd([r['accuracy'] for r in rows], 100, ' %')} | {delta} "
            f"| {_mean_sd([a['commands_correct'] for a in at], 100, ' %')} "
            f"| {_mean_sd([a['false_accepts_per_hour'] for a in at])} "
            f"| {_mean_sd([a['running_speech_false_accepts_per_hour'] for a in at])} | {len(rows)} "
            f"| {sum(r['clips'] for r in rows)} |"
        )
    return "\n".join(lines) + f"\n\n(stream figures at threshold {threshold:g})"


def sweep(results: dict[str, dict[str, dict]], name: str) -> str:
    """Command words found and false accepts per hour at each threshold, mean over the folds of ``name``."""
    rows = [r for r in results.get(name, {}).values() if "streams" in r]
    lines = [f"| `{name}`: threshold | command words found | false accepts / hour, other words "
             "| false accepts / hour, running speech |", "| --- | --- | --- | --- |"]  # fmt: skip
    for t in THRESHOLDS:
        at = [r["streams"][f"{t:g}"] for r in rows]
        lines.append(f"| {t:g} | {_mean_sd([a['commands_correct'] for a in at], 100, ' %')} "
                     f"| {_mean_sd([a['false_accepts_per_hour'] for a in at])} "
                     f"| {_mean_sd([a['running_speech_false_accepts_per_hour'] for a in at])} |")  # fmt: skip
    return "\n".join(lines)


def plot_curve(results: dict[str, dict[str, dict]], real_train: Path, real_test: Path, out: Path) -> None:
    """The learning curve: accuracy on every --real-test speaker against the real training speakers, and the
    ``final`` recipe's cross-validated accuracy beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = len({c.speaker for c in scan(real_train).clips})
    curve = {
        n: r for n, r in results.items() if EXPERIMENTS.get(n, Experiment("")).speakers is not None and "None" in r
    }
    points = sorted((min(EXPERIMENTS[n].speakers, total), r["None"]["accuracy"] * 100) for n, r in curve.items())
    if len(points) < 2:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    x, y = zip(*points)
    ax.plot([max(v, 5) for v in x], y, "o-", label="TTS + real training speakers (mostly 9 words)")
    if results.get("kws12"):  # the bundled recipe: the training speakers plus 4/5 of the test folder's, every word
        acc = [r["accuracy"] * 100 for r in results["kws12"].values()]
        speakers = total + round(len({c.speaker for c in scan(real_test).clips if c.word != SILENCE}) * 0.8)
        ax.errorbar(
            [speakers],
            [statistics.mean(acc)],
            yerr=[statistics.stdev(acc)] if len(acc) > 1 else None,
            fmt="s",
            color="C3",
            capsize=4,
            label="final recipe: + 104 speakers of every word (5-fold CV)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("real training speakers (0 plotted at 5)")
    ax.set_ylabel("accuracy on unseen real speakers (%)")
    ax.set_title("12-class accuracy against real training speakers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synth", required=True, help="TTS corpus made by kws synth")
    parser.add_argument("--real-train", required=True, help="real training speakers (Google layout)")
    parser.add_argument("--real-test", required=True, help="real speakers to cross-validate on (test-archive layout)")
    parser.add_argument("--real-more", help="more real training speakers (Google layout) for the experiments that "
                        "add them (default: REAL_TRAIN/../speech_commands_more_speakers)")  # fmt: skip
    parser.add_argument("--noise", help="background noise of the benchmark streams (default: REAL_TRAIN/../"
                        "speech_commands_background_noise)")  # fmt: skip
    parser.add_argument("--speech", help="a kws synth-speech folder, for the experiments that train on negatives")
    parser.add_argument("--experiments", default="base", help=f"comma-separated, from: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--folds", type=int, default=FOLDS, help=f"number of folds (default: {FOLDS})")
    parser.add_argument("--only-folds", help="comma-separated folds to run (default: all)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs per job (default: {EPOCHS})")
    parser.add_argument(
        "--batches", type=int, default=BATCHES, help=f"batches of 64 clips per epoch (default: {BATCHES})"
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings run side by side (default: 1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 2),
        help="threads per training (default: half the cores)",
    )
    parser.add_argument("--plot", help="write the learning curve of the curve-* experiments to this PNG")
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        choices=THRESHOLDS,
        help=f"detector threshold of the table's stream figures (default: {THRESHOLD:g})",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.experiments.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}: choose from {', '.join(EXPERIMENTS)}")
    if args.folds < 2 or args.jobs < 1 or args.threads < 1 or args.epochs < 1 or args.batches < 1:
        parser.error("--folds must be at least 2, and --jobs, --threads, --epochs and --batches at least 1")
    for flag in ("synth", "real_train", "real_test"):
        if not Path(getattr(args, flag)).is_dir():
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)} is not a folder")
    args.real_more = args.real_more or str(Path(args.real_train).parent / "speech_commands_more_speakers")
    if any(EXPERIMENTS[n].more_speakers for n in names) and not Path(args.real_more).is_dir():
        parser.error(f"--real-more {args.real_more} is not a folder")
    speech = args.speech and Path(args.speech).is_dir()
    if any("{speech}" in a for n in names for a in EXPERIMENTS[n].args) and not speech:
        parser.error("the experiments that train on negatives need --speech, a kws synth-speech folder")
    if any("kws12.yaml" in EXPERIMENTS[n].configs for n in names) and not (REPO / "data" / "tts_speech").is_dir():
        parser.error("configs/kws12.yaml trains on the negatives of data/tts_speech: make them with "
                     "kws synth-speech --out data/tts_speech")  # fmt: skip
    noise = Path(args.noise or Path(args.real_train).parent / "speech_commands_background_noise")
    if not noise.is_dir():
        parser.error(f"no background-noise folder at {noise}: give one with --noise")
    folds = [int(f) for f in args.only_folds.split(",")] if args.only_folds else list(range(args.folds))
    results_path = OUT / "results.json"
    results: dict[str, dict[str, dict]] = json.loads(results_path.read_text()) if results_path.exists() else {}
    jobs = [(n, None if EXPERIMENTS[n].speakers is not None else f) for n in names
            for f in ([None] if EXPERIMENTS[n].speakers is not None else folds)]  # fmt: skip
    todo = [(n, f) for n, f in jobs if "streams" not in results.get(n, {}).get(str(f), {})]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    librispeech_training(args)  # the real negatives of configs/kws12.yaml
    lock = threading.Lock()

    def run(job: tuple[str, int | None]) -> None:
        name, fold = job
        ckpt = fit_and_test(name, fold, args, env)
        accuracy, clips, recall = read_confusion(ckpt)
        with lock:  # one in-process stream evaluation at a time
            figures = stream_figures(ckpt, fold, args, noise)
            entry = {"accuracy": accuracy, "clips": clips, "recall": recall, "streams": figures,
                     "ckpt": str(ckpt.relative_to(REPO))}  # fmt: skip
            # merge into the file as it is now, so that runs of this script side by side keep each other's results
            results.update(json.loads(results_path.read_text()) if results_path.exists() else {})
            results.setdefault(name, {})[str(fold)] = entry
            write_text(results_path, json.dumps(results, indent=1, sort_keys=True) + "\n")
            fa = figures[f"{args.threshold:g}"]["false_accepts_per_hour"]
            progress.console.print(f"{job_name(name, fold)}: {accuracy:.1%} on {clips} clips, {fa:.1f} false accepts/h")

    columns = (TextColumn("cross-validation"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("jobs", total=len(jobs), completed=len(jobs) - len(todo))
        with ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(run, job) for job in todo]:
                try:
                    future.result()
                except (RuntimeError, KWSError, OSError) as err:
                    progress.console.print(f"[red]error:[/] {err}")
                progress.advance(task)
    print(summary(results, names, args.threshold))
    for name in names:
        if results.get(name):
            print("\n" + sweep(results, name))
    if args.plot:
        plot_curve(results, Path(args.real_train), Path(args.real_test), Path(args.plot))


if __name__ == "__main__":
    main()

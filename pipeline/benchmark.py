"""The stream benchmark: command words found against false accepts per hour, on speakers a model never heard.

Streams (made once into ``<out>/streams/``, each with its truth CSV, so a rerun reuses them):

* **positives**: real speakers saying the ten commands and other words over the official noise at ``SNRS``
  (``real_test``'s speakers, or those of one cross-validation fold), and held-out TTS voices (the test split of a
  ``kws synth`` corpus) at 10 dB;
* **negatives**, audio in which every detection is a false accept: real isolated other words of those speakers
  strung into running speech (``WORDS_GAP_SECONDS`` apart), real running speech (the LibriSpeech speakers of
  ``LIBRISPEECH_SALT``'s measure half; the others are for training and tuning), TTS running speech of held-out
  voices (``kws synth-speech``'s test split), each clean and at 10 dB; and the official noise files alone.

:func:`run_benchmark` scores a model on every stream at each threshold of a sweep (the window outputs computed once
per stream, :mod:`pipeline.stream_eval`) and keeps the figures in ``<out>/results.json`` by model file and
settings, so that an interrupted run resumes and a finished one is not scored again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.data.negatives import file_speaker, file_split, negative_files
from pipeline.data.speech_commands import SILENCE, TWELVE_WORDS, UNKNOWN, scan, which_fold, which_set
from pipeline.data.streams import make_stream, read_truth, truth_path, write_truth
from pipeline.errors import KWSError
from pipeline.files import write_text
from pipeline.runtime.audio import read_audio, save_audio
from pipeline.runtime.decision import Settings
from pipeline.runtime.streaming import Classifier
from pipeline.stream_eval import DET_THRESHOLDS, StreamStats, det_curve, score_windows

SNRS = (20.0, 10.0, 5.0)  # dB of the real command streams
NOISY_DB = 10.0  # the noisy version of every other stream
MINUTES = 10.0  # of each command stream
WORDS_MINUTES = 15.0  # of each stream of real other words
WORDS_GAP_SECONDS = (0.05, 0.3)  # isolated words strung into running speech
SPEECH_GAP_SECONDS = (0.3, 1.0)  # between passages of running speech
LIBRISPEECH_SALT = "libri:"  # which_set(salt + speaker, 0, 50) == "test": the speakers measured on
FOLD_SALT = "resplit:"  # the cross-validation folds of the official test archive's speakers (scripts/crossval.py)
FOLDS = 5  # how many (scripts/crossval.py's default)
VALIDATION_PERCENT = 10.0  # of the real training speakers, never trained on (crossval and configs/kws12.yaml)
DEMO_WORDS = (*TWELVE_WORDS, "bed", "cat", "happy", "marvin", "tree")  # TTS stream: two command words in three
POSITIVE, ISOLATED, RUNNING, TTS_SPEECH, NOISE = "commands", "isolated words", "running speech", "TTS speech", "noise"


@dataclass(frozen=True)
class BenchStream:
    """One stream of the benchmark: ``kind`` is ``POSITIVE`` or the kind of negative audio."""

    name: str
    path: Path
    kind: str


def librispeech_measured(speaker: str) -> bool:
    """Whether a LibriSpeech speaker is in the measure half (the other half trains and tunes)."""
    return which_set(LIBRISPEECH_SALT + speaker, 0.0, 50.0) == "test"


def librispeech_half(librispeech: Path, out: Path, measured: bool) -> Path:
    """A folder of links to the LibriSpeech files of the measure half (``measured``) or of the other half, as
    ``_speech_/<speaker>_nohash_<file>``; the other half is ``<out>/librispeech-train``, for ``data.negatives``."""
    files = sorted(p for p in Path(librispeech).rglob("*") if p.suffix.lower() in (".flac", ".wav")
                   and librispeech_measured(file_speaker(p)) == measured)  # fmt: skip
    named = {f"_speech_/{file_speaker(p)}_nohash_{p.stem}{p.suffix}": p for p in files}
    return _links(out / ("streams/source-librispeech-measured" if measured else "librispeech-train"), named)


def _links(folder: Path, files: dict[str, Path]) -> Path:
    """A folder of symbolic links ``folder/<relative name> -> file``, made once (atomically: a run beside this one
    may make the same folder)."""
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    for rel, target in files.items():
        link = tmp / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(target).resolve())
    try:
        tmp.rename(folder)
    except OSError:  # made meanwhile by another run
        shutil.rmtree(tmp)
    return folder


def _stream(path: Path, source: Path, noise: Path | None, snr_db: float | None, seed: int, **kwargs) -> Path:
    if not (path.exists() and truth_path(path).exists()):
        audio, truth = make_stream(source, noise, snr_db=snr_db, seed=seed, **kwargs)
        if not len(audio):
            raise KWSError(f"the stream {path.name} came out empty: its source {source} holds too little audio")
        write_truth(truth_path(path), truth)
        save_audio(path, audio)
    return path


def build_streams(
    out: Path, real_test: Path | None = None, librispeech: Path | None = None, noise: Path | None = None,
    corpus: Path | None = None, speech: Path | None = None, fold: int | None = None, folds: int = 5,
) -> list[BenchStream]:  # fmt: skip
    """Make the benchmark's streams that are missing (see the module docstring); those whose sources are not
    given are left out. ``fold``: only the speakers of that cross-validation fold of ``real_test``.

    Raises:
        KWSError: a source is not a folder, or no stream could be made.
    """
    for flag, folder in (("real_test", real_test), ("librispeech", librispeech), ("noise", noise),
                         ("corpus", corpus), ("speech", speech)):  # fmt: skip
        if folder is not None and not Path(folder).is_dir():
            raise KWSError(f"--{flag.replace('_', '-')} {folder} is not a folder")
    streams: list[BenchStream] = []
    where = out / "streams"
    tag = "all" if fold is None else f"fold{fold}of{folds}"
    if real_test is not None and noise is not None:
        clips = [c for c in scan(real_test).clips if c.word != SILENCE
                 and (fold is None or which_fold(FOLD_SALT + c.speaker, folds) == fold)]  # fmt: skip
        if not clips:
            raise KWSError(f"{real_test} holds no word clips of fold {fold}")
        named = {f"{c.word}/{c.path.name.partition('_')[2] if c.path.parent.name == UNKNOWN else c.path.name}": c.path
                 for c in clips}  # fmt: skip
        words = _links(where / f"source-real-{tag}", named)
        for snr in SNRS:
            path = where / f"real-commands-{tag}-{snr:g}dB.wav"
            streams.append(BenchStream(f"real commands {snr:g} dB", _stream(path, words, noise, snr, 1, split="all",
                                                                               minutes=MINUTES), POSITIVE))  # fmt: skip
        others = [w for w in {c.word for c in clips} if w not in TWELVE_WORDS]
        for snr in (None, NOISY_DB):
            path = where / f"real-other-words-{tag}-{'clean' if snr is None else f'{snr:g}dB'}.wav"
            audio = _stream(path, words, noise, snr, 2, split="all", words=others, minutes=WORDS_MINUTES,
                            gap_seconds=WORDS_GAP_SECONDS)  # fmt: skip
            level = "clean" if snr is None else f"{snr:g} dB"
            streams.append(BenchStream(f"real other words {level}", audio, ISOLATED))
    if corpus is not None and noise is not None:
        path = where / f"tts-commands-{NOISY_DB:g}dB.wav"
        streams.append(BenchStream(f"TTS voices {NOISY_DB:g} dB", _stream(path, corpus, noise, NOISY_DB, 3,
                                   split="test", words=DEMO_WORDS, minutes=MINUTES), POSITIVE))  # fmt: skip
    if librispeech is not None:
        source = librispeech_half(librispeech, out, measured=True)
        librispeech_half(librispeech, out, measured=False)
        for snr in (None, NOISY_DB) if noise is not None else (None,):
            path = where / f"librispeech-{'clean' if snr is None else f'{snr:g}dB'}.wav"
            streams.append(BenchStream(f"LibriSpeech {'clean' if snr is None else f'{snr:g} dB'}",
                                       _stream(path, source, noise, snr, 4, split="all", minutes=60.0, repeat=False,
                                               gap_seconds=SPEECH_GAP_SECONDS), RUNNING))  # fmt: skip
    if speech is not None:
        for snr in (None, NOISY_DB) if noise is not None else (None,):
            path = where / f"tts-speech-{'clean' if snr is None else f'{snr:g}dB'}.wav"
            streams.append(BenchStream(f"TTS speech {'clean' if snr is None else f'{snr:g} dB'}",
                                       _stream(path, speech, noise, snr, 5, split="test", words=["_speech_"],
                                               minutes=60.0, repeat=False, gap_seconds=SPEECH_GAP_SECONDS),
                                       TTS_SPEECH))  # fmt: skip
    if noise is not None:
        files = sorted(p for p in Path(noise).iterdir() if p.suffix.lower() in (".wav", ".flac"))
        path = where / "noise.wav"
        if not (path.exists() and truth_path(path).exists()):
            save_audio(path, np.concatenate([read_audio(p) for p in files]))
            write_truth(truth_path(path), [])
        streams.append(BenchStream("official noise", path, NOISE))
    if not streams:
        raise KWSError("no benchmark stream can be made: give the real folders, a TTS corpus or a speech folder")
    return streams


def model_key(path: str | Path, settings: Settings) -> str:
    """What a result is kept under: the model file's content and the settings of the sweep (less its threshold)."""
    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]
    fixed = {k: v for k, v in asdict(settings).items() if k != "threshold"}
    return f"{digest}:{json.dumps(fixed, sort_keys=True)}"


def run_benchmark(
    model: Classifier, model_path: str | Path, settings: Settings, streams: list[BenchStream], out: Path,
    thresholds: tuple[float, ...] = DET_THRESHOLDS,
) -> dict[str, list[StreamStats]]:  # fmt: skip
    """Each stream's statistics (by stream name) for ``model`` at ``settings`` and each of ``thresholds``, in
    order; figures already in ``<out>/results.json`` are reused, new ones are added as each stream is scored."""
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    key = model_key(model_path, settings)
    mine = results.setdefault(key, {"model": str(model_path), "settings": asdict(settings), "streams": {}})
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"benchmark {Path(model_path).name}", total=len(streams))
        for stream in streams:
            done = mine["streams"].get(stream.name, {})
            if all(f"{t:g}" in done for t in thresholds):
                progress.advance(task)
                continue
            audio = read_audio(stream.path, model.sample_rate)
            scored = score_windows(model, audio, settings.stride_ms, settings.smooth_windows - 1,
                                   read_truth(truth_path(stream.path)), model.sample_rate, stream.name)  # fmt: skip
            points = det_curve(model, settings, [scored], [], thresholds)
            mine["streams"][stream.name] = {f"{p.settings.threshold:g}": asdict(p.positives[stream.name])
                                            for p in points}  # fmt: skip
            fresh = json.loads(results_path.read_text()) if results_path.exists() else {}
            fresh[key] = mine
            write_text(results_path, json.dumps(fresh, indent=1, sort_keys=True) + "\n")
            progress.advance(task)
    return {s.name: [StreamStats(**mine["streams"][s.name][f"{t:g}"]) for t in thresholds] for s in streams}


def pooled(figures: dict[str, list[StreamStats]], streams: list[BenchStream], kind: str) -> list[StreamStats]:
    """Per threshold, the statistics of every stream of ``kind`` added together (none: no such stream)."""
    rows = [figures[s.name] for s in streams if s.kind == kind and s.name in figures]
    return [sum(row, StreamStats(0, 0, 0, 0, 0, 0.0)) for row in zip(*rows)]


def build_dev(
    out: Path, corpus: Path | None = None, speech: Path | None = None, librispeech: Path | None = None,
    real: Sequence[Path] = (), noise: Path | None = None,
) -> tuple[Path, Path]:  # fmt: skip
    """Development audio to tune an operating point on, apart from every measured stream: a stream of commands
    and other words, said by the validation speakers of the folders ``real`` (Google layout, no measured speaker in
    them: the speakers that ``FOLD_SALT``'s hash puts in the ``VALIDATION_PERCENT`` share, which no recipe trains
    on) over ``noise``, else by the TTS corpus's validation voices over its own noise;
    and a folder of negatives (the validation voices' running speech of ``speech`` and the training half of the
    LibriSpeech speakers). Returns the stream and the negatives folder (``kws evaluate-stream STREAM --negatives
    FOLDER --tune``)."""
    dev = out / "dev"
    if real and noise is not None:
        corpora = [scan(folder) for folder in real]
        clips = {f"{c.path.parent.name}/{c.path.name}": c.path for corpus in corpora for c in corpus.clips
                 if corpus.split_of(c, VALIDATION_PERCENT, 0.0, salt=FOLD_SALT) == "validation"}  # fmt: skip
        source = _links(dev / "real-validation", clips)
        stream = _stream(dev / "real-validation-commands.wav", source, noise, NOISY_DB, 6, split="all", minutes=MINUTES)
    elif corpus is not None:
        stream = _stream(dev / "commands.wav", corpus, None, NOISY_DB, 6, split="validation", words=DEMO_WORDS,
                         minutes=MINUTES)  # fmt: skip
    else:
        raise KWSError("a development stream needs real speakers apart from the measured ones, or a TTS corpus")
    files: dict[str, Path] = {}
    if speech is not None:
        found, lists = negative_files(Path(speech))
        files |= {f"tts/{p.name}": p for p in found if file_split(Path(speech), p, lists) == "validation"}
    if librispeech is not None:
        files |= {f"librispeech/{p.name}": p for p in sorted(librispeech_half(librispeech, out, False).rglob("*.flac"))}
    if not files:
        raise KWSError("development negatives need --speech or the real LibriSpeech folder")
    return stream, _links(dev / "negatives", files)


def clip_agreement(model: Classifier, settings: Settings, root: Path) -> tuple[float, float, float, int]:
    """On the command-word clips of ``root`` (a Speech Commands-layout folder): the share that ``kws transcribe``
    names exactly (its one word is the clip's label) at ``settings``, the share the decision rule alone names
    exactly (without the clip rule of :mod:`pipeline.runtime.decision`), the share ``kws predict`` labels right, and the
    number of clips."""
    from pipeline.runtime.decision import decide
    from pipeline.runtime.streaming import offline_scores, windowing_of

    clips = [c for c in scan(root).clips if c.word in model.labels and c.word in TWELVE_WORDS]
    if not clips:
        raise KWSError(f"{root} holds no clips of the model's command words")
    named = alone = labelled = 0
    w = windowing_of(model, settings.stride_ms)
    for clip in clips:
        audio = read_audio(clip.path, model.sample_rate)
        probs = offline_scores(model, audio, settings.stride_ms, settings.smooth_windows - 1)
        one_window = len(audio) <= w.samples
        named += [d.word for d in decide(probs, list(model.labels), settings, w, one_window)] == [clip.word]
        alone += [d.word for d in decide(probs, list(model.labels), settings, w)] == [clip.word]
        labelled += model.labels[int(offline_scores(model, audio[: w.samples])[0].argmax())] == clip.word
    return named / len(clips), alone / len(clips), labelled / len(clips), len(clips)

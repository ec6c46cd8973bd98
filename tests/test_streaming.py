"""Streaming detection, ``kws transcribe``, ``kws make-stream`` and ``kws evaluate-stream`` on generated audio."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from conftest import TONE_DETECTOR, WORDS, one_thread, word_sequence
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.cli import main as kws
from pipeline.data.speech_commands import SILENCE, UNKNOWN
from pipeline.data.streams import make_stream, read_truth
from pipeline.runtime.audio import SAMPLE_RATE, StreamResampler, fit_length, read_audio, resample, save_audio
from pipeline.runtime.decision import Settings
from pipeline.runtime.onnx_model import OnnxModel
from pipeline.runtime.streaming import Detector, offline_detect, offline_scores, window_probs
from pipeline.stream_eval import TUNE_SHOWN, score_stream, vocabulary
from pipeline.train.features import FeatureConfig
from pipeline.train.model import KWSModel, load_model
from pipeline.train.models import ModelConfig
from pipeline.train.module import KWSModule

CHUNKS = (1, 160, 1234, 16000, None)  # None: the whole signal in one push
TONE_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TONE_DETECTOR.items()]  # the same, as flags


def stream_through(detector: Detector, audio: np.ndarray, chunk: int | None, rate: int = SAMPLE_RATE):
    """Push ``audio`` in ``chunk``-sample pieces; return the detections and the per-window probabilities."""
    rows: list[np.ndarray] = []
    steps = detector._decider.steps

    def record(first: int, probs: np.ndarray):
        assert first == len(rows)  # every window once, in order
        rows.extend(probs)
        return steps(first, probs)

    detector._decider.steps = record
    chunk = chunk or len(audio)
    found = [d for i in range(0, len(audio), chunk) for d in detector.push(audio[i : i + chunk], rate)]
    found += detector.flush()
    return found, np.array(rows)


def assert_same(a: list, b: list, tol: float = 1e-4) -> None:
    assert [(d.word, d.start, d.end) for d in a] == [(d.word, d.start, d.end) for d in b]
    assert np.allclose([d.score for d in a], [d.score for d in b], atol=tol)


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


# ---- the engine --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(trained: Path) -> OnnxModel:
    return load_model(trained)  # exported to ONNX Runtime in memory: the default runtime


@pytest.fixture(scope="module")
def eager(trained: Path) -> KWSModel:
    return load_model(trained, runtime="torch")


def test_load_model_matches_the_lightning_module(trained: Path, eager: KWSModel) -> None:
    module = KWSModule.load_from_checkpoint(trained, map_location="cpu", weights_only=True).eval()
    windows = sliding_window_view(word_sequence(["up", "no"], seed=9), SAMPLE_RATE)[::3200]
    with torch.inference_mode():
        expected = module(torch.from_numpy(np.ascontiguousarray(windows))).numpy()
    np.testing.assert_allclose(eager.logits(eager.features(windows)), expected, atol=1e-5)
    assert eager.labels == module.labels == [SILENCE, UNKNOWN, *WORDS]


def test_the_onnx_runtime_gives_the_detections_of_pytorch(trained: Path, model: OnnxModel, eager: KWSModel,
                                                          tmp_path: Path) -> None:  # fmt: skip
    """In memory and through ``kws export``'s file, the ONNX model scores and decides as the checkpoint does."""
    assert isinstance(model, OnnxModel) and isinstance(eager, KWSModel)
    assert kws(["export", str(trained), "--out", str(tmp_path / "m.onnx")]) == 0
    exported = OnnxModel(tmp_path / "m.onnx")
    audio = word_sequence(["down", "yes", "no", "up"], seed=3)
    for onnx_model in (model, exported):
        np.testing.assert_allclose(offline_scores(onnx_model, audio), offline_scores(eager, audio), atol=1e-4)
        for chunk in (160, 16000):
            onnx_words, _ = stream_through(Detector(onnx_model, **TONE_DETECTOR), audio, chunk)
            torch_words, _ = stream_through(Detector(eager, **TONE_DETECTOR), audio, chunk)
            assert_same(onnx_words, torch_words)
            assert [d.word for d in onnx_words] == ["down", "yes", "no", "up"]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunk_size_does_not_change_scores_or_words(model: OnnxModel, chunk: int | None) -> None:
    audio = word_sequence(["yes", "up", "down"], seed=1)[: int(4.55 * SAMPLE_RATE)]  # not a whole number of strides
    settings = Settings(**TONE_DETECTOR)
    reference = offline_scores(model, audio, settings.stride_ms, settings.smooth_windows - 1)
    found, probs = stream_through(Detector(model, **TONE_DETECTOR), audio, chunk)
    assert probs.shape == reference.shape
    np.testing.assert_allclose(probs, reference, atol=1e-5)
    assert [d.word for d in found] == ["yes", "up", "down"]
    assert_same(found, offline_detect(model, audio, settings=settings))


@pytest.mark.parametrize("chunk", (160, 16000))
def test_deciding_early_emits_sooner(model: OnnxModel, tone_corpus: Path, chunk: int) -> None:
    """``hold_ms=0`` emits each word by the window that decided it: sooner than waiting for the end of its run,
    the same words on this stream, and still what the offline reference decides."""
    audio, truth = make_stream(tone_corpus, minutes=0.5, snr_db=20, seed=3, words=WORDS)
    delays: dict[float | None, list[float]] = {}
    words: dict[float | None, list[str]] = {}
    for hold in (None, 0.0):
        detector, found, delays[hold] = Detector(model, **TONE_DETECTOR, hold_ms=hold), [], []
        for i in range(0, len(audio), chunk):
            for d in detector.push(audio[i : i + chunk]):
                found.append(d)
                word_end = min((w.end for w in truth if w.end >= d.start), default=d.end)
                delays[hold].append(detector.seconds - word_end)
        found += detector.flush()
        words[hold] = [d.word for d in found]
        assert_same(found, offline_detect(model, audio, settings=Settings(**TONE_DETECTOR, hold_ms=hold)))
    assert words[0.0] == words[None] and len(words[None]) >= 5
    assert np.median(delays[0.0]) < np.median(delays[None]) - 0.15  # at least a stride sooner


def test_window_cmn_ignores_a_fixed_filter_and_streams_as_it_runs_offline() -> None:
    """``model.cmn``: a constant added to each feature row (a fixed filter on the audio) leaves the logits as they
    are, where the plain model's move; the engine's scores, in PyTorch and ONNX Runtime, equal the offline run."""
    torch.manual_seed(0)
    labels, features = [SILENCE, UNKNOWN, *WORDS], FeatureConfig(n_mels=40, n_mfcc=20)
    normalised, plain = (KWSModel(labels, features, ModelConfig(name="matchboxnet", size="1x1x8", cmn=cmn)).eval()
                         for cmn in (True, False))  # fmt: skip
    audio = word_sequence(["up", "no", "yes"], seed=5)
    windows = normalised.features(sliding_window_view(audio, SAMPLE_RATE)[::4000])
    tilt = 10 * np.random.default_rng(1).standard_normal((1, windows.shape[1], 1)).astype(np.float32)  # dB scale
    np.testing.assert_allclose(normalised.logits(windows + tilt), normalised.logits(windows), atol=1e-4)
    assert np.abs(plain.logits(windows + tilt) - plain.logits(windows)).max() > 1e-2
    assert_streams_as_offline(normalised, audio, atol=1e-5)


def assert_streams_as_offline(model: KWSModel, audio: np.ndarray, atol: float, **detector: float) -> None:
    """The engine's scores for ``audio`` pushed in chunks of several sizes, with ``model`` in PyTorch and
    exported to ONNX Runtime, equal the offline run's (``detector``: settings other than ``TONE_DETECTOR``'s)."""
    detector = TONE_DETECTOR | detector
    settings = Settings(**detector)
    reference = offline_scores(model, audio, settings.stride_ms, settings.smooth_windows - 1)
    for runtime in (model, OnnxModel(model.to_onnx())):
        for chunk in (1, 160, 1234, None):
            _, probs = stream_through(Detector(runtime, **detector), audio, chunk)
            np.testing.assert_allclose(probs, reference, atol=atol)


def test_smoothing_and_short_audio(model: OnnxModel) -> None:
    audio = word_sequence(["no"], seed=4)[:12000]  # shorter than one window: padded to one
    for smooth_ms in (200.0, 600.0):
        detector = Detector(model, smooth_ms=smooth_ms)
        found, probs = stream_through(detector, audio, 1000)
        assert probs.shape[0] == detector.settings.smooth_windows  # one window, then the smoothing tail
        assert [d.word for d in found] == ["no"]
        assert_same(found, offline_detect(model, audio, settings=detector.settings))


@pytest.mark.parametrize("rates", [(44100, SAMPLE_RATE), (8000, SAMPLE_RATE), (SAMPLE_RATE, 22050)])
def test_resampler_is_chunk_invariant_and_equals_torchaudio(rates: tuple[int, int]) -> None:
    x = np.random.default_rng(0).normal(0, 0.1, rates[0]).astype(np.float32)
    whole = resample(x, *rates)
    np.testing.assert_allclose(whole, torchaudio.functional.resample(torch.from_numpy(x), *rates).numpy(), atol=1e-5)
    for chunk in (1, 441, 1000, len(x)):
        r = StreamResampler(*rates)
        out = np.concatenate([r.push(x[i : i + chunk]) for i in range(0, len(x), chunk)] + [r.flush()])
        np.testing.assert_allclose(out, whole, atol=1e-6, rtol=0)


def test_other_rates_and_channels_match_the_offline_reference(model: OnnxModel) -> None:
    mono = resample(word_sequence(["no", "yes"], seed=2), SAMPLE_RATE, 22050)
    stereo = np.stack([mono, 0.5 * mono], axis=1)
    found, _ = stream_through(Detector(model), stereo, 3000, rate=22050)
    assert [d.word for d in found] == ["no", "yes"]
    assert_same(found, offline_detect(model, stereo.mean(axis=1), 22050))


def test_state_stays_bounded(model: OnnxModel) -> None:
    detector = Detector(model)
    chunk = np.random.default_rng(0).normal(0, 0.01, 8000).astype(np.float32)
    for _ in range(40):  # 20 s
        detector.push(chunk)
    assert detector._units.shape[1] < detector.windowing.frames + detector.windowing.stride_frames
    assert len(detector._features.pending) < detector.windowing.samples
    assert detector.seconds == pytest.approx(20.0)
    assert set(detector.scores) == {SILENCE, UNKNOWN, *WORDS}


def test_detects_words_at_their_times(model: OnnxModel, tone_corpus: Path) -> None:
    audio, truth = make_stream(tone_corpus, minutes=0.5, snr_db=20, seed=3)  # test-split speakers, 1-3 s gaps
    detector, chunk, found = Detector(model, **TONE_DETECTOR), 1600, []
    w = detector.windowing
    delay = (w.samples + (detector.settings.smooth_windows - 1) * w.stride + chunk) / SAMPLE_RATE
    for i in range(0, len(audio), chunk):
        for d in detector.push(audio[i : i + chunk]):
            found.append(d)
            assert detector.seconds - d.end <= delay + 1e-9  # the documented bound, plus one chunk
    found += detector.flush()
    stats = score_stream(found, truth, vocabulary(model), len(audio) / SAMPLE_RATE, tolerance_s=0.3)
    assert stats.ground_truth >= 4
    assert stats.correct >= stats.ground_truth - 1 and stats.wrong + stats.false_positives <= 1
    targets = [w for w in truth if w.word in WORDS]
    for d in found:
        assert 0 <= d.start < d.end and 0 < d.score <= 1 and d.word in WORDS
        nearest = min(targets, key=lambda w: abs(w.start + w.end - d.start - d.end))
        assert abs(d.start - nearest.start) < 0.3 and abs(d.end - nearest.end) < 0.3


# ---- kws transcribe ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    save_audio(root / "words.wav", word_sequence(["yes", "no", "up"], seed=5))
    save_audio(root / "short.wav", word_sequence(["down"], seed=6)[:5000])
    sf.write(root / "stereo44k.flac", np.stack([resample(word_sequence(["no"], 7), SAMPLE_RATE, 44100)] * 2, axis=1),
             44100)  # fmt: skip
    (root / "notes.txt").write_text("not audio")
    return root


def test_transcribe_formats(trained: Path, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wav = str(audio_dir / "words.wav")
    assert kws(["transcribe", wav, "--ckpt", str(trained), *TONE_FLAGS]) == 0
    text = capsys.readouterr().out
    assert text.startswith(wav) and re.search(r"\d+\.\d\d - +\d+\.\d\d s +(yes|no|up|down) +0\.\d\d", text)

    out = tmp_path / "out.json"
    assert (
        kws(
            [
                "transcribe",
                str(audio_dir),
                "--ckpt",
                str(trained),
                *TONE_FLAGS,
                "--format",
                "json",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert {Path(f["file"]).name for f in data} == {"words.wav", "short.wav", "stereo44k.flac"}
    assert all({"word", "start", "end", "score"} <= set(w) for f in data for w in f["words"])

    assert kws(["transcribe", wav, "--ckpt", str(trained), *TONE_FLAGS, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["file"] == wav and float(r["start"]) < float(r["end"]) for r in rows)

    assert kws(["transcribe", wav, "--ckpt", str(trained), *TONE_FLAGS, "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["word"] for r in lines] == [r["word"] for r in rows]

    assert kws(["transcribe", wav, "--ckpt", str(trained), *TONE_FLAGS, "--format", "srt"]) == 0
    cues = capsys.readouterr().out.strip().split("\n\n")
    assert len(cues) == len(rows)
    for n, cue in enumerate(cues, start=1):
        number, times, _ = cue.split("\n")
        assert number == str(n) and re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", times)


def test_transcribe_stdin_and_glob(trained: Path, audio_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    with open(audio_dir / "words.wav", "rb") as f:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(f))
        assert (
            kws(["transcribe", "-", "--ckpt", str(trained), *TONE_FLAGS, "--format", "jsonl", "--chunk-samples", "777"])
            == 0
        )
    piped = [json.loads(line)["word"] for line in capsys.readouterr().out.splitlines()]
    assert kws(["transcribe", str(audio_dir / "w*.wav"), "--ckpt", str(trained), *TONE_FLAGS, "--format", "jsonl"]) == 0
    assert [json.loads(line)["word"] for line in capsys.readouterr().out.splitlines()] == piped


def _bad_files(root: Path) -> dict[str, str]:
    """Bad inputs -> the phrase their error sentence must contain."""
    good = root / "good.wav"
    save_audio(good, word_sequence(["yes"], seed=8))
    (root / "text.wav").write_text("hello, I am not audio\n")
    (root / "zero.wav").write_bytes(b"")
    sf.write(root / "empty.wav", np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    (root / "header.wav").write_bytes(good.read_bytes()[:20])
    (root / "empty_dir").mkdir()
    (root / "empty_dir" / "readme.md").write_text("no audio here")
    return {
        str(root / "missing.wav"): "no such file or folder",
        str(root / "text.wav"): "cannot read audio",
        str(root / "zero.wav"): "cannot read audio",
        str(root / "empty.wav"): "holds no audio samples",
        str(root / "header.wav"): "cannot read audio",
        str(root / "empty_dir"): "holds no audio files",
        str(root / "nothing*.wav"): "no file matches",
    }


def test_transcribe_bad_inputs(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = _bad_files(tmp_path)
    good = str(tmp_path / "good.wav")
    assert kws(["transcribe", *bad, good, "--ckpt", str(trained)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad)
    for name, phrase in bad.items():
        assert any(name in line and phrase in line for line in errors), (name, phrase, errors)
    assert captured.out.startswith(good)  # the good file is still transcribed


def test_truncated_and_short_audio(trained: Path, tmp_path: Path, audio_dir: Path,
                                   capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    full = (audio_dir / "words.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 2])
    assert kws(["transcribe", str(tmp_path / "cut.wav"), str(audio_dir / "short.wav"), "--ckpt", str(trained)]) == 0
    captured = capsys.readouterr()
    assert "truncated" in captured.err and str(audio_dir / "short.wav") in captured.out


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: p.write_text("not a checkpoint"), "is not a PyTorch checkpoint"),
        (lambda p: torch.save({"state_dict": {}}, p), "not a kws checkpoint"),
        (lambda p: torch.save({"state_dict": {}, "hyper_parameters": {"labels": ["a", "b"]}}, p), "usable kws model"),
        (lambda p: None, "does not exist"),
    ],
)
def test_transcribe_bad_checkpoint(make, phrase: str, audio_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    ckpt = tmp_path / "model.ckpt"
    make(ckpt)
    assert kws(["transcribe", str(audio_dir / "words.wav"), "--ckpt", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(ckpt) in err and phrase in err and len(err.strip().splitlines()) == 1


# ---- kws make-stream / evaluate-stream ---------------------------------------------------------------------------


def test_make_and_evaluate_stream(trained: Path, model: OnnxModel, tone_corpus: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    out = tmp_path / "stream.wav"
    assert kws(["make-stream", "--source", str(tone_corpus), "--out", str(out), "--minutes", "0.4", "--seed", "1"]) == 0
    truth = read_truth(tmp_path / "stream.csv")
    audio = read_audio(out)
    assert len(truth) >= 5 and audio.shape[0] == int(0.4 * 60 * SAMPLE_RATE)
    gaps = [b.start - a.end for a, b in zip(truth, truth[1:])]
    assert min(gaps) >= 0.99 and max(gaps) <= 3.01
    noise_dir = tone_corpus / "_background_noise_"
    capsys.readouterr()
    assert kws(["evaluate-stream", str(out), "--ckpt", str(trained), *TONE_FLAGS, "--noise-only", str(noise_dir)]) == 0
    report = " ".join(capsys.readouterr().out.replace("│", " ").split())  # cells, without the table's lines
    # the figures printed are those of the offline reference scored here
    settings = Settings(**TONE_DETECTOR)
    found = offline_detect(model, audio, SAMPLE_RATE, settings)
    stats = score_stream(found, truth, vocabulary(model), audio.shape[0] / SAMPLE_RATE, 0.5)
    assert stats.percent(stats.correct) > 50  # the tone model hears most of its words
    row = " ".join(
        f"{stats.percent(n):.1f}%" for n in (stats.matched, stats.correct, stats.wrong, stats.false_positives)
    )
    assert f"{row} {stats.false_accepts_per_hour:.1f}" in report, report
    noise = [read_audio(f) for f in sorted(noise_dir.iterdir())]
    false_accepts = sum(len(offline_detect(model, n, SAMPLE_RATE, settings)) for n in noise)
    minutes = sum(n.shape[0] for n in noise) / SAMPLE_RATE / 60
    assert f"negatives: {false_accepts} false accepts in {minutes:.1f} min" in report, report


def test_evaluate_stream_tune_prints_the_best_settings(trained: Path, tone_corpus: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    out = tmp_path / "dev.wav"
    assert kws(["make-stream", "--source", str(tone_corpus), "--out", str(out), "--minutes", "0.3", "--seed", "2"]) == 0
    capsys.readouterr()
    assert kws(["evaluate-stream", str(out), "--ckpt", str(trained), "--tune"]) == 0
    report = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "best detector settings" in report
    rows = re.findall(r"\b[01](?:\.\d+)? \d+ \d+ \d+ \d \d+\.\d%", report)
    assert len(rows) == TUNE_SHOWN, report  # threshold, stride, smoothing, suppression and patience of each


# ---- kws predict -------------------------------------------------------------------------------------------------


def test_predict_classifies_clips_as_the_model_does(trained: Path, model: OnnxModel, tone_corpus: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    test_clips = sorted(str(p) for w in WORDS for p in (tone_corpus / w).glob("spk002_*.wav"))  # held-out speaker
    long = tmp_path / "long.wav"
    save_audio(long, word_sequence(["yes", "no"], seed=3))  # about 3 s: only its first second is classified
    (tmp_path / "broken.wav").write_text("not audio")
    out = tmp_path / "predictions.csv"
    status = kws(
        ["predict", *test_clips, str(long), str(tmp_path / "broken.wav"), "--ckpt", str(trained), "-o", str(out)]
    )
    err = capsys.readouterr().err
    assert status == 1 and "broken.wav: cannot read audio" in err and "1 file(s) are longer than 1 s" in err
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [*test_clips, str(long)]
    assert list(rows[0])[3:] == model.labels  # one score column per label
    clips = np.stack([fit_length(read_audio(r["file"])) for r in rows])
    expected = window_probs(model, model.features(clips))
    for row, probs in zip(rows, expected):
        scores = [float(row[label]) for label in model.labels]
        assert np.allclose(scores, probs, atol=1e-4) and abs(sum(scores) - 1) < 1e-3
        assert row["label"] == model.labels[int(probs.argmax())] and float(row["score"]) == max(scores)
    right = sum(r["label"] == Path(r["file"]).parent.name for r in rows[:-1])
    assert right >= 0.8 * len(test_clips), rows
    assert kws(["predict", test_clips[0], "--ckpt", str(trained), "--format", "json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert (
        item["file"] == test_clips[0] and item["label"] == rows[0]["label"] and set(item["scores"]) == set(model.labels)
    )


def test_tune_within_a_budget_saves_the_operating_point_every_door_uses(
    trained: Path, model: OnnxModel, tone_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from rich.console import Console

    from pipeline.live import build_parser as live_parser
    from pipeline.live import run_demo
    from pipeline.stream_eval import tune

    dev, test = tmp_path / "dev.wav", tmp_path / "test.wav"
    for out, seed in ((dev, 4), (test, 5)):
        assert kws(["make-stream", "--source", str(tone_corpus), "--out", str(out), "--minutes", "0.4",
                    "--seed", str(seed)]) == 0  # fmt: skip
    negatives = tone_corpus / "_background_noise_"
    ckpt = tmp_path / "tuned.ckpt"
    ckpt.write_bytes(trained.read_bytes())
    budget = 200.0
    assert kws(["evaluate-stream", str(dev), "--ckpt", str(ckpt), "--tune", "--stride-ms", "200", "--fa-budget",
                str(budget), "--negatives", str(negatives), "--save"]) == 0  # fmt: skip
    assert "wrote the operating point" in capsys.readouterr().out
    # the tuner's ranking: within the budget, no setting finds more words than the one saved
    ranked = tune(model, read_audio(dev), read_truth(dev.with_suffix(".csv")), strides_ms=(200.0,),
                  patience=(1, 2, 3), negatives=[read_audio(f) for f in sorted(negatives.iterdir())],
                  fa_budget=budget)  # fmt: skip
    best, stats = ranked[0]
    assert stats.false_accepts_per_hour <= budget
    assert all(r.correct <= stats.correct for _, r in ranked if r.false_accepts_per_hour <= budget)
    saved = load_model(ckpt)
    assert saved.decision == best.to_dict()
    # kws transcribe and kws live use it unless told otherwise, from the checkpoint and from its export
    expected = offline_detect(saved, read_audio(test), SAMPLE_RATE, best)
    onnx = tmp_path / "tuned.onnx"
    assert kws(["export", str(ckpt), "--out", str(onnx)]) == 0
    for flag, path in (("--ckpt", ckpt), ("--model", onnx)):
        capsys.readouterr()
        assert kws(["transcribe", str(test), flag, str(path), "--format", "jsonl"]) == 0
        words = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(w["word"], w["start"], w["end"]) for w in words] == [(d.word, d.start, d.end) for d in expected]
        summary = run_demo(live_parser().parse_args([flag, str(path), "--input-file", str(test)]),
                           Console(file=io.StringIO()))  # fmt: skip
        assert [d.word for d in summary.words] == [
            d.word
            for d in offline_detect(saved, read_audio(test), SAMPLE_RATE, Settings(**best.to_dict(), hold_ms=0.0))
        ]
    # a flag still wins over the model's own point
    capsys.readouterr()
    assert kws(["transcribe", str(test), "--ckpt", str(ckpt), "--threshold", "0.3", "--format", "jsonl"]) == 0
    words = [json.loads(line)["word"] for line in capsys.readouterr().out.splitlines()]
    lower = offline_detect(saved, read_audio(test), SAMPLE_RATE, Settings(**{**best.to_dict(), "threshold": 0.3}))
    assert words == [d.word for d in lower]


def test_evaluate_stream_det_sweeps_the_threshold(trained: Path, model: OnnxModel, tone_corpus: Path,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    out, png = tmp_path / "det.wav", tmp_path / "det.png"
    assert kws(["make-stream", "--source", str(tone_corpus), "--out", str(out), "--minutes", "0.4", "--seed", "6"]) == 0
    negatives = tone_corpus / "_background_noise_"
    capsys.readouterr()
    assert kws(["evaluate-stream", str(out), "--ckpt", str(trained), *TONE_FLAGS, "--negatives", str(negatives),
                "--det", str(png), "--thresholds", "0.3,0.6,0.9"]) == 0  # fmt: skip
    report = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    truth = read_truth(out.with_suffix(".csv"))
    for t in (0.3, 0.6, 0.9):  # each row is the engine's figure at that threshold
        settings = Settings(**{**TONE_DETECTOR, "threshold": t})
        stats = score_stream(offline_detect(model, read_audio(out), SAMPLE_RATE, settings), truth,
                             vocabulary(model), read_audio(out).shape[0] / SAMPLE_RATE, 0.5)  # fmt: skip
        assert f"{t:g} {stats.percent(stats.correct):.1f}% {stats.false_accepts_per_hour:.1f}" in report, report

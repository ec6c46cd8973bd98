"""A streaming (causal) model trained by ``kws fit`` from its config switch, run frame by frame by the engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WORDS, one_thread, word_sequence
from test_streaming import assert_same, stream_through

from pipeline.cli import main as kws
from pipeline.data.streams import make_stream
from pipeline.runtime.audio import SAMPLE_RATE, save_audio
from pipeline.runtime.decision import Settings
from pipeline.runtime.onnx_model import OnnxModel
from pipeline.runtime.streaming import STREAM_STRIDE_MS, Detector, offline_detect, offline_scores, settings_for, softmax
from pipeline.train.model import KWSModel, load_model

REPO = Path(__file__).resolve().parents[1]
SEQUENCE = ["up", "yes", "down", "no"]


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def causal_ckpt(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``kws fit`` with ``configs/streaming.yaml`` composed on the MFCC recipe for TTS, on the tone corpus."""
    work = tmp_path_factory.mktemp("causal")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        code = kws(["fit", "--config", str(REPO / "configs" / "tts_mfcc.yaml"),
                    "--config", str(REPO / "configs" / "streaming.yaml"), f"--data.root={tone_corpus}",
                    f"--data.task={json.dumps(WORDS)}", "--data.cache_dir=null", "--data.batch_size=16",
                    "--trainer.max_epochs=12", "--trainer.enable_progress_bar=false", "--seed_everything=0",
                    "--model.optimizer.lr=0.01", "--model.label_smoothing=0", "--data.augment.reverb_prob=0",
                    "--data.augment.band_prob=0"])  # fmt: skip
    assert code == 0
    return work / "runs" / "tts_mfcc" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def eager(causal_ckpt: Path) -> KWSModel:
    return load_model(causal_ckpt, runtime="torch")


@pytest.fixture(scope="module")
def export_path(causal_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "causal.onnx"
    assert kws(["export", str(causal_ckpt), "--out", str(out), "--int8"]) == 0  # the self-check runs the step too
    return out


@pytest.fixture(scope="module")
def exported(export_path: Path) -> OnnxModel:
    return OnnxModel(export_path)


def test_the_config_switch_trains_a_streaming_model(causal_ckpt: Path, eager: KWSModel, exported: OnnxModel,
                                                    export_path: Path) -> None:  # fmt: skip
    hparams = torch.load(causal_ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["model"]["name"] == "matchboxnet" and hparams["model"]["causal"] is True
    assert eager.streaming and exported.streaming and load_model(causal_ckpt).streaming
    assert Detector(exported).settings.stride_ms == STREAM_STRIDE_MS  # it decides every 10 ms by default
    int8 = OnnxModel(export_path.with_suffix(".int8.onnx"))  # the step path quantizes too (shared weights)
    logits, state = int8.frame_logits(np.zeros((int8.n_features, 5), np.float32), int8.initial_state())
    assert int8.streaming and logits.shape == (len(int8.labels), 5) and state.shape == int8.initial_state().shape
    audio = word_sequence(SEQUENCE, seed=5)
    # the stream's first window has the same past (none) as a training clip: the window classifier's scores
    first = softmax(eager.logits(eager.features(audio[:SAMPLE_RATE])[None]))[0]
    np.testing.assert_allclose(offline_scores(eager, audio, STREAM_STRIDE_MS)[0], first, atol=1e-5)


@pytest.mark.parametrize("chunk", (1, 160, 1234, 16000, None))
def test_frame_by_frame_equals_the_whole_run_for_any_chunk(eager: KWSModel, exported: OnnxModel,
                                                           chunk: int | None) -> None:  # fmt: skip
    """The engine feeding the model chunk by chunk with its state gives every 10 ms window the scores of the
    non-streaming run over the whole signal, in PyTorch and in the exported file, and the words it says."""
    audio = word_sequence(SEQUENCE, seed=5)[: int(6.255 * SAMPLE_RATE)]  # not a whole number of strides
    reference = offline_scores(eager, audio, STREAM_STRIDE_MS)
    for model in (eager, exported):
        found, probs = stream_through(Detector(model, threshold=0.5), audio, chunk)
        assert probs.shape == reference.shape
        np.testing.assert_allclose(probs, reference, atol=1e-4)
        assert [d.word for d in found] == SEQUENCE
        assert_same(found, offline_detect(model, audio, settings=settings_for(model, threshold=0.5)))


def test_deciding_early_with_a_streaming_model(exported: OnnxModel, tone_corpus: Path) -> None:
    """At a 10 ms step and ``hold_ms=0``, words come out sooner than by the end of their run, the same words,
    each as the offline reference decides it."""
    audio, truth = make_stream(tone_corpus, minutes=0.5, snr_db=20, seed=3, words=WORDS)
    delays, words = {}, {}
    for hold in (None, 0.0):
        detector, found, delays[hold] = Detector(exported, threshold=0.5, hold_ms=hold), [], []
        for i in range(0, len(audio), 1600):
            for d in detector.push(audio[i : i + 1600]):
                found.append(d)
                delays[hold].append(detector.seconds - min((w.end for w in truth if w.end >= d.start), default=d.end))
        found += detector.flush()
        words[hold] = [d.word for d in found]
        settings = Settings(0.5, STREAM_STRIDE_MS, STREAM_STRIDE_MS, hold_ms=hold)
        assert_same(found, offline_detect(exported, audio, settings=settings))
    assert words[0.0] == words[None] and len(words[None]) >= 5
    assert np.median(delays[0.0]) < np.median(delays[None]) - 0.1


def test_transcribe_and_the_microphone_demo_run_it_every_10_ms(
    causal_ckpt: Path, export_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Both doors take a streaming checkpoint or export as is: the demo's callback path gives the words of
    ``kws transcribe`` with its default rule, at the streaming model's 10 ms step."""
    import io

    from rich.console import Console

    from pipeline.live import HOLD_MS, build_parser, run_demo

    path = tmp_path / "sequence.wav"
    save_audio(path, word_sequence(SEQUENCE, seed=8))
    for flags in (["--ckpt", str(causal_ckpt)], ["--model", str(export_path)]):
        assert kws(["transcribe", str(path), *flags, "--threshold=0.5", f"--hold-ms={HOLD_MS}", "--format=jsonl"]) == 0
        expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        args = build_parser().parse_args([*flags, "--threshold=0.5", "--input-file", str(path)])
        summary = run_demo(args, Console(file=io.StringIO()))
        assert [r["word"] for r in expected] == SEQUENCE
        assert [(d.word, d.start, d.end) for d in summary.words] == [
            (r["word"], r["start"], r["end"]) for r in expected
        ]

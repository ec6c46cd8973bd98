"""The microphone demo (scripts/mic_demo.py, pipeline/live.py) without a microphone: files played through the
capture callback, the terminal view rendered headless, the recording after Ctrl+C, and the error paths."""

from __future__ import annotations

import _thread
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import TONE_DETECTOR, WORDS, one_thread, word_sequence
from rich.console import Console

from pipeline.cli import main as kws
from pipeline.data.streams import make_stream
from pipeline.live import HOLD_MS, LiveView, build_parser, main, run_demo
from pipeline.runtime.audio import SAMPLE_RATE, resample
from pipeline.runtime.capture import SILENCE_DB, AudioTap, Session, dbfs
from pipeline.runtime.streaming import Detector
from pipeline.train.model import load_model

FILE_RATE = 44100  # the test stream's rate: the engine resamples, as it would a microphone's
INTERRUPT_AFTER_S = 1.0  # audio recorded before the simulated Ctrl+C
WAIT_S = 60.0  # longest wait for the recording to grow


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def stream_file(tone_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated stream of the target tone words over noise (``kws make-stream``), stereo at 44.1 kHz."""
    audio, truth = make_stream(tone_corpus, minutes=0.3, snr_db=20, seed=3, words=WORDS)
    assert len(truth) >= 5
    wave = resample(audio, SAMPLE_RATE, FILE_RATE)
    path = tmp_path_factory.mktemp("live") / "stream.wav"
    sf.write(path, np.stack([wave, 0.5 * wave], axis=1), FILE_RATE, subtype="PCM_16")
    return path


def _args(*argv: str):
    return build_parser().parse_args(list(argv))


def test_file_path_gives_the_detections_of_transcribe(trained: Path, stream_file: Path,
                                                      capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    # the live default decides early (HOLD_MS); kws transcribe gives the same words with the same flag
    assert (
        kws(["transcribe", str(stream_file), "--ckpt", str(trained), "--format", "jsonl", f"--hold-ms={HOLD_MS}"]) == 0
    )
    expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = run_demo(_args("--ckpt", str(trained), "--input-file", str(stream_file)), Console(file=io.StringIO()))
    assert len(expected) >= 4
    assert [(d.word, d.start, d.end) for d in summary.words] == [(r["word"], r["start"], r["end"]) for r in expected]
    np.testing.assert_allclose([d.score for d in summary.words], [r["score"] for r in expected], atol=1e-4)
    assert not summary.interrupted and summary.overflows == 0
    assert summary.seconds == pytest.approx(sf.info(stream_file).duration)


def test_view_renders_headless(trained: Path) -> None:
    session = Session(Detector(load_model(trained), **TONE_DETECTOR), AudioTap(maxsize=4), SAMPLE_RATE)
    audio = word_sequence(["yes", "up"], seed=11)
    block = 800
    for i in range(0, len(audio), block):
        session.tap.callback(audio[i : i + block, None], block, None, None)  # the capture path, block by block
        session.process(*session.tap.queue.get_nowait())
    for _ in range(5):  # nobody takes blocks: the fifth does not fit
        session.tap.callback(audio[:block, None], block, None, None)
    out = io.StringIO()
    Console(file=out, width=100).print(LiveView(session, "test stream"))
    text = out.getvalue()
    assert "test stream" in text and f"{session.level_db:6.1f} dBFS" in text and "overflows 1" in text
    words = [line for line in text.splitlines() if "█" in line or "░" in line]
    assert len(words) == 1 + 5  # the level meter and the top five labels
    assert session.heard and [h.detection.word for h in session.heard] == ["yes", "up"]
    for h in session.heard:  # the log: clock time, stream times, word, score
        d = h.detection
        assert any(f"{d.start:8.2f} - {d.end:8.2f} s" in line and d.word in line and f"{d.score:.2f}" in line
                   for line in text.splitlines())  # fmt: skip


def test_level_and_overflow_flags() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    assert dbfs(np.sin(2 * np.pi * 440 * t)) == pytest.approx(-3.01, abs=0.01)
    assert dbfs(np.zeros(100)) == SILENCE_DB
    sd = pytest.importorskip("sounddevice", exc_type=OSError)  # PortAudio's own status flags, where installed
    tap = AudioTap(maxsize=10)
    tap.callback(np.zeros((10, 1), np.float32), 10, None, sd.CallbackFlags(2))  # paInputOverflow
    assert tap.overflows == 1 and tap.queue.qsize() == 1


def test_ctrl_c_leaves_a_valid_recording(trained: Path, stream_file: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """Ctrl+C (SIGINT, as the terminal sends it) in the middle of a real-time run: exit 0, a summary line, and
    the recording so far as a valid WAV."""
    out = tmp_path / "heard.wav"
    enough = INTERRUPT_AFTER_S * FILE_RATE * 2 * 2  # bytes of 16-bit stereo

    def interrupt_once_recording() -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if any(p.stat().st_size > enough for p in tmp_path.glob(".heard.wav.*.tmp")):
                _thread.interrupt_main()  # raises SIGINT's handler in the main thread, as Ctrl+C does
                return
            time.sleep(0.02)

    threading.Thread(target=interrupt_once_recording, daemon=True).start()
    assert main(["--ckpt", str(trained), "--input-file", str(stream_file), "--realtime", "--save", str(out)]) == 0
    captured = capsys.readouterr()
    assert "stopped (Ctrl+C)" in captured.out and f"recording saved to {out}" in captured.out
    assert "Traceback" not in captured.err
    heard, rate = sf.read(out, dtype="int16", always_2d=True)
    original, _ = sf.read(stream_file, dtype="int16", always_2d=True)
    assert rate == FILE_RATE and heard.shape[1] == 2
    assert INTERRUPT_AFTER_S * FILE_RATE <= len(heard) < len(original)
    np.testing.assert_array_equal(heard, original[: len(heard)])  # what was heard, sample for sample
    assert not list(tmp_path.glob(".*.tmp"))


def _bad_checkpoint(tmp_path: Path) -> str:
    path = tmp_path / "bad.ckpt"
    path.write_text("not a checkpoint")
    return str(path)


@pytest.mark.parametrize(
    ("argv", "phrases"),
    [
        (lambda t, ck, wav: ["--ckpt", _bad_checkpoint(t), "--input-file", wav], ["bad.ckpt"]),
        (lambda t, ck, wav: ["--ckpt", ck, "--input-file", str(t / "missing.wav")], ["missing.wav: no such file"]),
        (
            lambda t, ck, wav: ["--ckpt", ck, "--device", "no such device"],
            ["no usable input device 'no such device'", "PortAudio is not installed"],
        ),
        (lambda t, ck, wav: ["--ckpt", ck, "--realtime"], ["--realtime applies to --input-file only"]),
    ],
    ids=["bad-checkpoint", "missing-input-file", "no-such-device", "realtime-without-file"],
)
def test_errors_are_one_sentence(argv, phrases: list[str], trained: Path, stream_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    assert main(argv(tmp_path, str(trained), str(stream_file))) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error:") and len(captured.err.strip().splitlines()) == 1
    assert any(phrase in captured.err for phrase in phrases), captured.err
    assert "Traceback" not in captured.err


def test_no_input_device(trained: Path, capsys: pytest.CaptureFixture) -> None:
    """On a machine without audio input (as in CI), the default device gives one sentence, not a traceback."""
    sd = pytest.importorskip("sounddevice", exc_type=OSError)
    if any(d["max_input_channels"] > 0 for d in sd.query_devices()):
        pytest.skip("this machine has an audio input")
    assert main(["--ckpt", str(trained)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no audio input device found")
    assert main(["--list-devices"]) == 0
    listed = capsys.readouterr().out
    if not len(sd.query_devices()):
        assert listed.strip() == "no audio devices found"

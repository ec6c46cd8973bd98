"""The Python API: one small class a program uses in three lines, on the same engine as every ``kws`` command.

A :class:`Spotter` holds a model (the bundled one, a ``kws fit`` checkpoint or a ``kws export`` ONNX file) and a
streaming :class:`~pipeline.runtime.streaming.Detector` at the model's own operating point. ``feed`` takes chunks of any
length as they arrive (a microphone, a socket), ``transcribe`` a whole file (the words ``kws transcribe``
prints), ``classify`` one clip (the scores ``kws predict`` prints). An exported or bundled model runs without
PyTorch.

Example:
    >>> import numpy as np
    >>> from pipeline import Spotter
    >>> spotter = Spotter()  # the bundled model
    >>> spotter.labels[2:5]
    ['yes', 'no', 'up']
    >>> spotter.feed(np.zeros(16000, np.int16)) + spotter.flush()  # a second of silence: no word
    []
    >>> for chunk in chunks:  # doctest: +SKIP
    ...     for word in spotter.feed(chunk):
    ...         print(word.word, word.start)
    >>> spotter.flush()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.console import warn
from pipeline.errors import TRAINING_STACK, AudioError, KWSError, first_line
from pipeline.runtime.audio import SAMPLE_RATE, clip_samples, fit_length, open_audio, read_audio, resample, to_mono
from pipeline.runtime.bundled import ModelCard, resolve_model
from pipeline.runtime.decision import Detection
from pipeline.runtime.onnx_model import RUNTIMES, OnnxModel
from pipeline.runtime.streaming import Classifier, Detector, window_probs

STDIN = "-"
CHUNK_SAMPLES = 102400  # frames read per block: 6.4 s at 16 kHz, one full model batch (32 strides) per block
ONNX_SUFFIX = ".onnx"
SETTINGS = ("threshold", "stride_ms", "smooth_ms", "suppression_ms", "hold_ms", "patience")  # Detector's keywords


def load_checkpoint(path: str, runtime: str) -> Classifier:
    """A ``kws fit`` checkpoint through :func:`pipeline.train.model.load_model`, which needs PyTorch.

    Raises:
        KWSError: PyTorch is not installed, or the checkpoint cannot be used.
    """
    try:
        from pipeline.train.model import load_model
    except ImportError:
        raise KWSError(f"a .ckpt checkpoint needs PyTorch ({TRAINING_STACK}); an exported .onnx model does not: "
                       "give it with --model") from None  # fmt: skip
    return load_model(path, runtime)


def open_model(
    source: str | os.PathLike | None = None, runtime: str = RUNTIMES[0]
) -> tuple[Classifier, ModelCard | None]:
    """The model ``source`` names, carrying its operating point, and its card if it is a bundled one.

    Args:
        source: An exported model (``.onnx``), a checkpoint (``.ckpt``), a bundled model's name, or None for the
            default bundled model.
        runtime: How a checkpoint runs: ``"onnx"`` (exported in memory) or ``"torch"``. A bundled model runs its
            export without PyTorch unless ``"torch"`` is asked for.

    Raises:
        KWSError: the model cannot be found or used.
    """
    if source is not None and Path(source).suffix.lower() == ONNX_SUFFIX:
        return OnnxModel(source), None
    path, card = resolve_model(None if source is None else str(source))
    if card is None:
        return load_checkpoint(path, runtime), None
    model = load_checkpoint(path, runtime) if runtime == "torch" else OnnxModel(card.export_path, name=card.name)
    if not model.decision:  # an export made before exports carried their point
        model.decision = {"threshold": card.threshold}
    return model, card


def read_blocks(source: str, chunk_samples: int = CHUNK_SAMPLES) -> Iterator[tuple[np.ndarray, int, int]]:
    """Yield ``(mono float32 block, sample rate, total frames or -1)`` from a file or ``-`` (stdin).

    Raises:
        AudioError: the input cannot be decoded or holds no samples.
    """
    name = "standard input" if source == STDIN else source
    sound = open_audio(sys.stdin.buffer.fileno() if source == STDIN else source, name)
    with sound:
        total = sound.frames if sound.seekable() else -1
        if total > 0 and "(should be" in sound.extra_info.split("data :")[-1].split("\n")[0]:
            warn(f"{name}: the file is truncated; transcribing the {total / sound.samplerate:.1f} s it holds")
        frames = 0
        while True:
            try:
                block = sound.read(chunk_samples, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as err:
                raise AudioError(f"{name}: cannot decode audio ({first_line(err)})") from None
            if not len(block):
                break
            frames += len(block)
            yield to_mono(block), sound.samplerate, total
    if not frames:
        raise AudioError(f"{name}: the file holds no audio samples")


@dataclass
class Transcript:
    """The words found in one input."""

    file: str
    seconds: float
    words: list[Detection] = field(default_factory=list)


def transcribe_source(
    detector: Detector,
    source: str,
    chunk_samples: int = CHUNK_SAMPLES,
    on_block: Callable[[int, int], None] | None = None,
) -> Transcript:
    """Stream one input through ``detector`` (which is reset afterwards).

    Args:
        detector: The streaming detector.
        source: A file path or ``-``.
        chunk_samples: Frames per block read.
        on_block: Called with ``(frames read so far, total frames or -1)`` after each block.
    """
    words: list[Detection] = []
    done, rate = 0, 1
    try:
        for block, rate, total in read_blocks(source, chunk_samples):
            words += detector.push(block, rate)
            done += len(block)
            if on_block:
                on_block(done, total)
        words += detector.flush()
    finally:
        detector.reset()
    return Transcript(source, done / rate, words)


def as_float(samples: np.ndarray) -> np.ndarray:
    """Float32 samples in [-1, 1) from float or integer PCM (int16: divided by 32768)."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / float(-np.iinfo(samples.dtype).min)
    return samples.astype(np.float32, copy=False)


class Spotter:
    """Find command words in audio, at the model's own operating point unless told otherwise.

    Args:
        model: An exported model (``.onnx``), a checkpoint (``.ckpt``), a bundled model's name (``kws models``), a
            loaded :class:`~pipeline.runtime.streaming.Classifier`, or None for the default bundled model.
        runtime: How a checkpoint runs: ``"onnx"`` or ``"torch"`` (default: ``"onnx"``).
        **settings: Decision settings of :class:`~pipeline.runtime.streaming.Detector` (``threshold``, ``stride_ms``,
            ``smooth_ms``, ``suppression_ms``, ``hold_ms``, ``patience``); each left out takes the model's own
            operating point, else the engine's default.

    Example:
        >>> spotter = Spotter()  # doctest: +SKIP
        >>> [(w.word, round(w.start, 2)) for w in spotter.transcribe("yes_then_no.wav")]  # doctest: +SKIP
        [('yes', 0.52), ('no', 2.31)]
        >>> spotter.classify(clip)["yes"]  # doctest: +SKIP
        0.97
    """

    def __init__(
        self, model: str | os.PathLike | Classifier | None = None, runtime: str = RUNTIMES[0], **settings: float | None
    ) -> None:
        if model is None or isinstance(model, (str, os.PathLike)):
            self.model, self.card = open_model(model, runtime)
        else:
            self.model, self.card = model, None
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise KWSError(f"unknown decision setting(s) {', '.join(unknown)}: choose from {', '.join(SETTINGS)}")
        self.detector = Detector(self.model, **settings)

    @property
    def labels(self) -> list[str]:
        """The model's labels, in its output order."""
        return list(self.model.labels)

    def feed(self, chunk: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[Detection]:
        """Push the next chunk of a stream (any length; float or int16; mono or ``(n, channels)``); return the
        words decided so far, in order. Audio at another rate than the model's is resampled."""
        return self.detector.push(as_float(chunk), sample_rate)

    def flush(self) -> list[Detection]:
        """End the stream: the words still pending. The next :meth:`feed` starts a new stream at time 0."""
        return self.detector.flush()

    def transcribe(self, source: str | os.PathLike) -> list[Detection]:
        """The words of a whole file (any length, format or rate), as ``kws transcribe`` finds them. The stream
        fed so far is reset first."""
        self.detector.reset()
        return transcribe_source(self.detector, os.fspath(source)).words

    def classify(self, clip: np.ndarray | str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
        """``{label: probability}`` of one clip (samples or a file), as ``kws predict`` scores it: the first
        window (1 s) of it, zero-padded if shorter."""
        rate = self.model.sample_rate
        if isinstance(clip, (str, os.PathLike)):
            audio = read_audio(os.fspath(clip), rate)
        else:
            audio = resample(to_mono(as_float(clip)), sample_rate, rate)
        window = fit_length(audio, clip_samples(rate))
        probs = window_probs(self.model, self.model.features(window[None]))[0]
        return dict(zip(self.labels, probs.tolist()))

"""Audio capture for the streaming engine: a microphone or a file, block by block, into a detector.

**Audio path.** PortAudio (through sounddevice) calls :meth:`AudioTap.callback` from its own thread with each
block of ``BLOCK_MS`` at the device's native rate (:class:`MicSource`). The callback only copies the block, with
the time it arrived, into a bounded queue; when the queue is full the block is dropped and counted, as are the
overflows that PortAudio reports (``status.input_overflow``). Everything else happens in the main thread
(:class:`Session`): the blocks go, at their own rate, into the same :class:`~pipeline.runtime.streaming.Detector`
that ``kws transcribe`` uses (it resamples to the model's rate), and to the recording.

**Files instead of a microphone.** :class:`FileSource` plays a file through the very same callback from a
producer thread, in blocks of the same size: paced in real time, or as fast as the main thread takes them (it
then waits for room in the queue, so nothing is dropped and the detections equal those of ``kws transcribe`` on
the file). ``kws live`` (:mod:`pipeline.live`) draws a session in the terminal; the bench scripts time one.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from pipeline.errors import AudioError, KWSError, first_line
from pipeline.runtime.audio import open_audio
from pipeline.runtime.streaming import Detection, Detector

BLOCK_MS = 50.0  # audio per callback block: the device block size, and the file producer's
QUEUE_SECONDS = 5.0  # audio the queue holds before blocks are dropped (and counted as overflows)
POLL_SECONDS = 0.1  # longest wait for a block: the view refreshes and Ctrl+C is seen at least this often
ROOM_POLL_SECONDS = 0.002  # file producer, as fast as possible: wait between checks for room in the queue
REFRESH_SECONDS = 0.1  # a session's view is redrawn at most this often (and on every detection)
SILENCE_DB = -120.0  # level of a silent block (and before the first one)
PORTAUDIO_MISSING = "PortAudio is not installed: run `apt-get install -y libportaudio2`"

_END = None  # queue item: the source has no more audio


def import_sounddevice() -> ModuleType:
    """Import sounddevice; it raises OSError when the PortAudio library is missing.

    Raises:
        KWSError: PortAudio is not installed.
    """
    try:
        import sounddevice
    except OSError:
        raise KWSError(PORTAUDIO_MISSING) from None
    return sounddevice


def block_size(sample_rate: int, block_ms: float = BLOCK_MS) -> int:
    """Frames per callback block at ``sample_rate``."""
    return max(1, round(sample_rate * block_ms / 1000))


def dbfs(block: np.ndarray) -> float:
    """RMS level of a block in dB relative to full scale (a full-scale sine is -3 dBFS), at least ``SILENCE_DB``."""
    rms = math.sqrt(float(np.mean(np.square(block, dtype=np.float64)))) if block.size else 0.0
    return max(SILENCE_DB, 20 * math.log10(max(rms, 1e-12)))


class AudioTap:
    """The audio callback's side of the queue: copies each block in, counts what is lost.

    Args:
        maxsize: Blocks the queue holds.
    """

    def __init__(self, maxsize: int) -> None:
        self.queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(maxsize=maxsize)
        self.overflows = 0

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """sounddevice's input callback: ``indata`` is ``(frames, channels)``; no work beyond a copy."""
        if getattr(status, "input_overflow", False):
            self.overflows += 1
        try:
            self.queue.put_nowait((indata.copy(), time.monotonic()))
        except queue.Full:
            self.overflows += 1

    def end(self, stop: threading.Event) -> None:
        """Mark the end of the input (waits for room unless ``stop`` is set)."""
        while not stop.is_set():
            try:
                self.queue.put(_END, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue


class Source(Protocol):
    """Something that feeds an :class:`AudioTap`: a microphone or a file."""

    name: str
    samplerate: int
    channels: int

    def start(self) -> None: ...

    def stop(self) -> None: ...


class FileSource:
    """Plays an audio file through :meth:`AudioTap.callback` from a producer thread, block by block.

    Args:
        path: Any file libsndfile reads.
        tap: The tap whose callback receives the blocks.
        realtime: Deliver each block when it would have been recorded; otherwise as fast as the queue allows.
        block_ms: Block length, as a device's.

    Raises:
        AudioError: the file is missing, not audio, or empty.
    """

    def __init__(
        self, path: str | os.PathLike, tap: AudioTap, realtime: bool = False, block_ms: float = BLOCK_MS
    ) -> None:
        self.name = str(path)
        if not Path(path).is_file():
            raise AudioError(f"{path}: no such file")
        self._file = open_audio(path)
        self.samplerate, self.channels = self._file.samplerate, self._file.channels
        self.tap, self.realtime, self.blocksize = tap, realtime, block_size(self.samplerate, block_ms)
        self.error: KWSError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="kws-file-source", daemon=True)

    def start(self) -> None:
        """Start the producer thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the producer (if still running) and close the file."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._file.close()

    def _produce(self) -> None:
        start, sent = time.monotonic(), 0
        try:
            while not self._stop.is_set():
                block = self._file.read(self.blocksize, dtype="float32", always_2d=True)
                if not len(block):
                    break
                sent += len(block)
                if self.realtime:
                    if self._stop.wait(max(0.0, start + sent / self.samplerate - time.monotonic())):
                        break
                else:
                    while self.tap.queue.full():
                        if self._stop.wait(ROOM_POLL_SECONDS):
                            return
                self.tap.callback(block, len(block), None, None)
        except (sf.LibsndfileError, RuntimeError) as err:
            self.error = AudioError(f"{self.name}: cannot decode audio ({first_line(err)})")
        finally:
            self.tap.end(self._stop)


class MicSource:
    """An input device, captured by sounddevice at its native rate into an :class:`AudioTap`.

    Args:
        tap: The tap whose callback PortAudio calls.
        device: Index or (part of the) name of the device; None for the default input.
        samplerate: Capture rate; None for the device's native rate.
        block_ms: Block length.

    Raises:
        KWSError: PortAudio missing, no such input device, unsupported rate, or a device that cannot be opened.
    """

    def __init__(
        self, tap: AudioTap, device: int | str | None = None, samplerate: int | None = None, block_ms: float = BLOCK_MS
    ) -> None:
        sd = import_sounddevice()
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as err:
            if device is None:
                raise KWSError("no audio input device found: connect a microphone (see --list-devices)") from None
            raise KWSError(f"no usable input device {device!r} ({first_line(err)}): see --list-devices") from None
        self.name = str(info["name"])
        self.samplerate = int(samplerate or info["default_samplerate"])
        self.channels = 1
        self._sd = sd
        try:
            sd.check_input_settings(device, channels=1, dtype="float32", samplerate=self.samplerate)
        except (ValueError, sd.PortAudioError) as err:
            raise KWSError(f"input device {self.name!r} cannot capture mono at {self.samplerate} Hz "
                           f"({first_line(err)})") from None  # fmt: skip
        try:
            self._stream = sd.InputStream(
                device=device,
                channels=1,
                samplerate=self.samplerate,
                dtype="float32",
                blocksize=block_size(self.samplerate, block_ms),
                callback=tap.callback,
            )
        except sd.PortAudioError as err:
            raise self._unavailable("open", err) from None

    def start(self) -> None:
        """Start capturing."""
        try:
            self._stream.start()
        except self._sd.PortAudioError as err:
            self._stream.close(ignore_errors=True)
            raise self._unavailable("start", err) from None

    def _unavailable(self, action: str, err: Exception) -> KWSError:
        return KWSError(f"cannot {action} input device {self.name!r}: busy or unavailable ({first_line(err)})")

    def stop(self) -> None:
        """Stop capturing and release the device."""
        self._stream.close(ignore_errors=True)


@dataclass(frozen=True)
class Heard:
    """A detection, with when it was emitted."""

    detection: Detection
    emitted_at: float  # time.monotonic() when the detector returned it
    position: float  # seconds of input received by then
    wall: float  # time.time() when the detector returned it (for the log)


@dataclass
class Session:
    """The main thread's work: take blocks from the tap, feed the detector and the recording.

    Args:
        detector: The streaming detector (the one of ``kws transcribe``).
        tap: Where the blocks come from.
        sample_rate: Rate of the blocks (the source's).
        recording: Open sound file that receives every block, or None.
        on_block: Called with ``(seconds of input up to the block's end, time.monotonic() when it was delivered)``
            before the block is processed.
    """

    detector: Detector
    tap: AudioTap
    sample_rate: int
    recording: sf.SoundFile | None = None
    on_block: Callable[[float, float], None] | None = None
    heard: list[Heard] = field(default_factory=list)
    frames: int = 0
    level_db: float = SILENCE_DB
    scores: dict[str, float] = field(default_factory=dict)
    ended: bool = False

    @property
    def seconds(self) -> float:
        """Input received so far, in seconds."""
        return self.frames / self.sample_rate

    def run(self, stop: threading.Event, refresh: Callable[[], None] | None = None) -> None:
        """Process blocks until the source ends or ``stop`` is set (checked between blocks, at least every
        ``POLL_SECONDS``); ``refresh`` redraws the view, at most every ``REFRESH_SECONDS`` and on detections.
        """
        drawn = 0.0
        while not self.ended and not stop.is_set():
            try:
                item = self.tap.queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                found = 0
            else:
                found = self.finish() if item is _END else self.process(*item)
            if refresh and (found or time.monotonic() - drawn >= REFRESH_SECONDS):
                refresh()
                drawn = time.monotonic()

    def process(self, block: np.ndarray, delivered_at: float) -> int:
        """Record and detect one ``(frames, channels)`` block; return the number of new detections."""
        self.frames += len(block)
        if self.on_block:
            self.on_block(self.seconds, delivered_at)
        self.level_db = dbfs(block)
        if self.recording is not None:
            self.recording.write(block)
        found = self.detector.push(block, self.sample_rate)
        self.scores = self.detector.scores
        return self._log(found)

    def finish(self) -> int:
        """End of input (or Ctrl+C): flush the detector once; return the number of new detections."""
        if self.ended:
            return 0
        self.ended = True
        return self._log(self.detector.flush() if self.frames else [])

    def _log(self, found: list[Detection]) -> int:
        now, wall = time.monotonic(), time.time()
        self.heard += [Heard(d, now, self.seconds, wall) for d in found]
        return len(found)

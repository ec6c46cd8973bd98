"""Live keyword spotting from a microphone (``kws live``, alias ``scripts/mic_demo.py``) on the streaming engine
of ``kws transcribe``.

**Audio path.** PortAudio (through sounddevice) calls :meth:`AudioTap.callback` from its own thread with
each block of ``BLOCK_MS`` at the device's native rate. The callback only copies the block, with the time it
arrived, into a bounded queue; when the queue is full the block is dropped and counted, as are the overflows
that PortAudio reports (``status.input_overflow``). Everything else happens in the main thread
(:class:`Session`): the blocks go, at their own rate, into the same :class:`~pipeline.runtime.streaming.Detector` that
``kws transcribe`` uses (it resamples to the model's rate), to the recording, and to the terminal view.

**Files instead of a microphone.** :class:`FileSource` plays a file through the very same callback from a
producer thread, in blocks of the same size: paced in real time (``--realtime``), or as fast as the main
thread takes them (it then waits for room in the queue, so nothing is dropped and the detections equal those of
``kws transcribe`` on the file).

**Recording.** ``--save`` writes what was heard, as it is heard, to a 16-bit WAV with a temporary name beside
the target; the file is closed (which completes its header) and renamed onto the target in a ``finally``
block, so Ctrl+C or an error still leaves a valid WAV of everything heard until then. Only a hard kill
(SIGKILL, power loss) leaves the temporary file instead.

**Ctrl+C** stops the run cleanly: while audio flows, SIGINT only sets a flag that the main loop checks between
blocks (so no block is half processed or half written); the detector is flushed, a summary line is printed and
the exit status is 0.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import soundfile as sf
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pipeline.arguments import add_detector_arguments, detector_from_args
from pipeline.console import console as stdout_console
from pipeline.console import err_console, print_error
from pipeline.errors import AudioError, KWSError, first_line
from pipeline.files import atomic_path
from pipeline.runtime.audio import open_audio
from pipeline.runtime.labels import is_word
from pipeline.runtime.streaming import THRESHOLD, Detection, Detector

BLOCK_MS = 50.0  # audio per callback block: the device block size, and the file producer's
QUEUE_SECONDS = 5.0  # audio the queue holds before blocks are dropped (and counted as overflows)
POLL_SECONDS = 0.1  # longest wait for a block: the view refreshes and Ctrl+C is seen at least this often
ROOM_POLL_SECONDS = 0.002  # file producer, as fast as possible: wait between checks for room in the queue
REFRESH_SECONDS = 0.1  # the terminal view is redrawn at most this often (and on every detection)
METER_FLOOR_DB = -60.0  # bottom of the level meter, dBFS
SILENCE_DB = -120.0  # level of a silent block (and before the first one)
TOP_WORDS = 5  # labels shown with their smoothed scores
LOG_LINES = 8  # detections kept in the view's log
BAR_WIDTH = 40  # characters of a full bar
PORTAUDIO_MISSING = "PortAudio is not installed: run `apt-get install -y libportaudio2`"
HOLD_MS = 0.0  # emit each word by the window that decides it: median 0.2 s after the word, not 0.8 (docs/streaming.md)
ERROR_STATUS = 2  # exit status of a bad flag, file, device or checkpoint (as ``kws``)

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


def _bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """A horizontal bar: ``fraction`` of ``width`` filled, in eighths of a character."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return Text.assemble((filled, "green"), ("░" * (width - len(filled)), "grey35"))


@dataclass
class LiveView:
    """The terminal view of a :class:`Session`, a rich renderable: level meter, top words, detections, overflows."""

    session: Session
    source: str
    threshold: float = THRESHOLD
    top: int = TOP_WORDS
    log_lines: int = LOG_LINES

    def __rich__(self) -> RenderableType:
        s = self.session
        level = Table.grid(padding=(0, 2))
        level.add_row("level", _bar(1 - max(s.level_db, METER_FLOOR_DB) / METER_FLOOR_DB), f"{s.level_db:6.1f} dBFS")
        overflows = s.tap.overflows
        level.add_row("heard", f"{s.seconds:.1f} s", Text(f"overflows {overflows}", "red" if overflows else ""))

        scores = sorted((s.scores or s.detector.scores).items(), key=lambda item: -item[1])[: self.top]
        words = Table.grid(padding=(0, 2))
        for label, score in scores:
            style = "dim" if not is_word(label) else "bold" if score > self.threshold else ""
            words.add_row(Text(label, style), _bar(score), f"{score:.2f}")

        log = Table.grid(padding=(0, 2))
        for h in s.heard[-self.log_lines :]:
            d = h.detection
            log.add_row(time.strftime("%H:%M:%S", time.localtime(h.wall)), f"{d.start:8.2f} - {d.end:8.2f} s",
                        Text(d.word, "bold green"), f"{d.score:.2f}")  # fmt: skip
        if not s.heard:
            log.add_row(Text("no words yet", "dim"))
        body = Group(level, Text(), Text("top words", "underline"), words, Text(),
                     Text(f"detections ({len(s.heard)})", "underline"), log)  # fmt: skip
        return Panel(body, title=f"kws live: {escape(self.source)} ({s.sample_rate} Hz)", title_align="left")


@contextmanager
def sigint_sets(event: threading.Event) -> Iterator[None]:
    """Within the block, Ctrl+C (SIGINT) sets ``event`` instead of raising KeyboardInterrupt (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def open_recording(path: str | os.PathLike, sample_rate: int, channels: int) -> Iterator[sf.SoundFile]:
    """A 16-bit WAV written under a temporary name beside ``path``, closed and renamed onto ``path`` on exit,
    even after Ctrl+C or an error: ``path`` is then a valid WAV of what was written until then.

    Raises:
        KWSError: the file cannot be created.
    """
    with ExitStack() as stack:
        tmp = None
        try:
            tmp = stack.enter_context(atomic_path(path, keep_on_error=True))
            sound = stack.enter_context(sf.SoundFile(tmp, "w", sample_rate, channels, "PCM_16", format="WAV"))
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            if tmp is not None:
                tmp.unlink()  # nothing was recorded: leave ``path`` as it was
            raise KWSError(f"cannot write the recording {path} ({first_line(err)})") from None
        yield sound


@dataclass(frozen=True)
class Summary:
    """How a run ended."""

    seconds: float
    words: list[Detection]
    overflows: int
    interrupted: bool
    saved: str | None

    def line(self) -> str:
        """One line for the terminal."""
        how = "stopped (Ctrl+C)" if self.interrupted else "end of input"
        text = (f"{how}: {self.seconds:.1f} s heard, {len(self.words)} word{'s' * (len(self.words) != 1)}, "
                f"{self.overflows} overflow{'s' * (self.overflows != 1)}")  # fmt: skip
        return text + (f"; recording saved to {self.saved}" if self.saved else "")


def build_parser(prog: str = "kws live") -> argparse.ArgumentParser:
    """The argument parser of ``kws live`` (and of its alias ``scripts/mic_demo.py``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Spot command words live from a microphone (or a file played as one), with a terminal view.",
    )
    parser.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument("--device", help="input device: index or part of the name from --list-devices (default: "
                        "the system's default input)")  # fmt: skip
    parser.add_argument("--samplerate", type=int, help="capture rate in Hz (default: the device's native rate)")
    parser.add_argument("--save", metavar="WAV", help="also write what is heard to this WAV file (valid after Ctrl+C)")
    inputs.add_argument(
        "--input-file", metavar="AUDIO", help="play this audio file through the capture path instead of a microphone"
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="with --input-file: deliver the audio at its real pace (default: as fast as possible)",
    )
    add_detector_arguments(parser, chunks=False, hold_ms=HOLD_MS)
    return parser


def list_devices(console: Console) -> None:
    """Print the audio devices PortAudio sees (``>`` marks the default input).

    Raises:
        KWSError: PortAudio is not installed.
    """
    sd = import_sounddevice()
    devices = sd.query_devices()
    if not len(devices):
        console.print("no audio devices found", highlight=False)
        return
    console.print(str(devices), markup=False, highlight=False)


def run_demo(args: argparse.Namespace, console: Console) -> Summary:
    """Run the demo described by ``args`` (from :func:`build_parser`), drawing the view on ``console``.

    Returns the summary when the input ends or on Ctrl+C.

    Raises:
        KWSError: a bad checkpoint, input file, device or recording path; the file source failed mid-way.
    """
    if args.samplerate is not None and args.samplerate <= 0:
        raise KWSError(f"--samplerate must be positive, not {args.samplerate}")
    if args.realtime and not args.input_file:
        raise KWSError("--realtime applies to --input-file only")
    tap = AudioTap(maxsize=max(1, math.ceil(QUEUE_SECONDS * 1000 / BLOCK_MS)))
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    stop = threading.Event()
    with ExitStack() as stack:
        if args.input_file:
            source: Source = FileSource(args.input_file, tap, realtime=args.realtime)
        else:
            source = MicSource(tap, device, args.samplerate)
        stack.callback(source.stop)
        detector = detector_from_args(args)
        recording = None
        if args.save:
            recording = stack.enter_context(open_recording(args.save, source.samplerate, source.channels))
        session = Session(detector, tap, source.samplerate, recording)
        view = LiveView(session, source.name, detector.settings.threshold)
        with Live(view, console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:
            with sigint_sets(stop):
                source.start()
                session.run(stop, live.refresh)
                session.finish()
        if not console.is_terminal:  # rich ends the last frame with a newline on terminals only
            console.line()
    if isinstance(source, FileSource) and source.error:
        raise source.error
    return Summary(session.seconds, [h.detection for h in session.heard], tap.overflows, stop.is_set(), args.save)


def main(argv: list[str] | None = None, prog: str = "kws live") -> int:
    """Entry point of ``kws live`` (``prog``: the name its usage shows); returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    try:
        if args.list_devices:
            list_devices(stdout_console)
            return 0
        summary = run_demo(args, stdout_console)
    except KWSError as err:
        print_error(str(err))
        return ERROR_STATUS
    except KeyboardInterrupt:  # before the capture started (e.g. while the model loads)
        err_console.print("interrupted", highlight=False)
        return 0
    stdout_console.print(summary.line(), highlight=False, soft_wrap=True)
    return 0

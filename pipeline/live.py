"""Live keyword spotting from a microphone (``kws live``, alias ``scripts/mic_demo.py``) on the streaming engine
of ``kws transcribe``.

**Audio path.** A microphone (or a file played as one) feeds the streaming engine of ``kws transcribe`` block by
block (:mod:`pipeline.runtime.capture`); this module draws the session in the terminal: the level meter, the top
scores, the log of words, and the summary line.

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
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

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
from pipeline.errors import KWSError, first_line
from pipeline.files import atomic_path
from pipeline.runtime.capture import (
    BLOCK_MS,
    QUEUE_SECONDS,
    AudioTap,
    FileSource,
    MicSource,
    Session,
    Source,
    import_sounddevice,
)  # fmt: skip
from pipeline.runtime.labels import is_word
from pipeline.runtime.streaming import THRESHOLD, Detection

METER_FLOOR_DB = -60.0  # bottom of the level meter, dBFS
TOP_WORDS = 5  # labels shown with their smoothed scores
LOG_LINES = 8  # detections kept in the view's log
BAR_WIDTH = 40  # characters of a full bar
HOLD_MS = 0.0  # emit each word by the window that decides it: median 0.2 s after the word, not 0.8 (docs/streaming.md)
ERROR_STATUS = 2  # exit status of a bad flag, file, device or checkpoint (as ``kws``)


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

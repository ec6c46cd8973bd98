"""``kws synth`` itself: the corpus marker (settings and renderer version), the job pool with its progress bar, the
list files, and the command line."""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.console import console, warn
from pipeline.data.speech_commands import NOISE_DIR, TESTING_LIST, VALIDATION_LIST, audio_files
from pipeline.data.synth.engines import DEFAULT_STYLES, STYLES
from pipeline.data.synth.noise import BABBLE, COLORS, _convert, render_noise
from pipeline.data.synth.render import DEFAULT_PITCH_SPREAD, PRESETS, clip_name, render_voice, resolve_words
from pipeline.data.synth.voices import SLOW_FIRST, available_voices, default_voices, select_voices
from pipeline.errors import DataError
from pipeline.files import write_text

MARKER = ".kws_synth.json"
DEFAULT_CLIPS_PER_VOICE = 1
RENDERER = 2  # raised when a voice renders the same settings differently; 2: festival says its text (1: "text")
MARKER_DEFAULTS = {"styles": list(DEFAULT_STYLES), "pitch_spread": DEFAULT_PITCH_SPREAD, "renderer": 1}  # older markers


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl+C


def _call(job: Callable[[], int]) -> int:
    return job()


def read_marker(out: str | os.PathLike, marker: str = MARKER) -> dict | None:
    """The settings the corpus in ``out`` was made with (an older marker completed with ``MARKER_DEFAULTS``), or
    ``None`` when ``out`` holds no ``kws synth`` corpus (or none of the command whose ``marker`` is given)."""
    path = Path(out) / marker
    return {**MARKER_DEFAULTS, **json.loads(path.read_text())} if path.is_file() else None


def check_out(out: Path, settings: dict, marker: str = MARKER) -> None:
    """Refuse an output folder that holds another corpus, one of other ``settings`` or of an older renderer,
    or files of the user's (one sentence each); ``marker`` names the file that records the settings."""
    old = read_marker(out, marker)
    if old is not None:
        if old["renderer"] != settings["renderer"]:
            raise DataError(
                f"{out} was made by an older kws synth (renderer {old['renderer']}, whose festival voices said "
                f'"text" for every word): delete it or choose another --out folder'
            )
        if changed := ["--" + key.replace("_", "-") for key in settings if old.get(key) != settings[key]]:
            raise DataError(
                f"{out} holds a kws synth corpus made with different {', '.join(changed)}: "
                "re-run with the same settings to complete it, or choose another --out folder"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} is not empty and was not made by kws synth (no {marker}): choose another --out folder")


def run_jobs(todo: list[tuple[int, Callable[[], int]]], jobs: int | None, label: str = "synth") -> int:
    """Run ``(files, job)`` pairs on ``jobs`` worker processes (default: one per CPU) with a progress bar over
    the files; each job returns how many it wrote. Returns the total written."""
    total = sum(count for count, _ in todo)
    if todo:
        columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        pool = multiprocessing.get_context("fork").Pool(jobs or os.cpu_count(), _worker_init)  # inherits imports
        with pool, Progress(*columns, console=console) as bar:
            task = bar.add_task(label, total=total)
            for written in pool.imap_unordered(_call, [job for _, job in todo]):
                bar.advance(task, written)
    return total


def synthesize(
    words: str | Sequence[str],
    out: str | os.PathLike,
    clips_per_voice: int = DEFAULT_CLIPS_PER_VOICE,
    seed: int = 0,
    jobs: int | None = None,
    voices: Sequence[str] | None = None,
    noise_dir: str | os.PathLike | None = None,
    styles: Sequence[str] = DEFAULT_STYLES,
    pitch_spread: float = DEFAULT_PITCH_SPREAD,
) -> Path:
    """Render a corpus into ``out`` (see the module docstring) and return ``out``.

    Args:
        words: A preset (``gsc-v2-12``, ``gsc-v2-35``), a comma list, or a list of words.
        out: The corpus folder: new, empty, or an earlier corpus of the same settings (completed).
        clips_per_voice: Clips of each word by each voice.
        seed: The seed of every random draw.
        jobs: Worker processes (default: one per CPU).
        voices: Globs over voice ids (``all`` for every voice); ``None`` takes :func:`default_voices`.
        noise_dir: A folder of real noise recordings for ``_background_noise_`` instead of the generated coloured
            noise; the babble is kept beside them (without it real speakers lost 6-8 points, docs/tts_corpus.md).
        styles: Speaking styles (keys of ``STYLES``) that each clip draws one of.
        pitch_spread: How far each clip's pitch is drawn from the voice's own, 0-1 (see :class:`Say`).

    Raises:
        DataError: no TTS engine, bad words or voices, an output folder that is not this corpus, or a
            noise folder without audio, an unknown style, a pitch spread outside 0-1.
    """
    words, out, chosen = resolve_words(words), Path(out), select_voices(voices)
    if clips_per_voice < 1 or (jobs is not None and jobs < 1):
        raise DataError(f"--clips-per-voice and --jobs must be at least 1, not {clips_per_voice} and {jobs}")
    if not styles or (unknown := [style for style in styles if style not in STYLES]):
        given = ", ".join(map(repr, unknown)) if styles else "(none)"
        raise DataError(f"unknown speaking style {given}: choose from {', '.join(STYLES)}")
    if not 0 <= pitch_spread <= 1:
        raise DataError(f"--pitch-spread must be between 0 and 1, not {pitch_spread}")
    noise_files = []
    if noise_dir is not None:
        noise_dir = Path(noise_dir)
        noise_files = audio_files(noise_dir)
        if not noise_files:
            raise DataError(f"--noise-dir {noise_dir} holds no audio files")
    settings = {
        "words": list(words),
        "voices": [v.id for v in chosen],
        "seed": seed,
        "clips_per_voice": clips_per_voice,
        "noise_dir": None if noise_dir is None else str(noise_dir.resolve()),
        "styles": list(styles),
        "pitch_spread": pitch_spread,
        "renderer": RENDERER,
    }
    check_out(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob("**/.*.tmp"):  # left by a killed run
        stray.unlink()
    write_text(out / MARKER, json.dumps(settings, indent=1) + "\n")

    noise = out / NOISE_DIR
    talkers = [v for v in chosen if v.split == "train"] or chosen  # held-out voices stay unheard in training
    make = functools.partial(render_noise, voices=talkers, avoid=words, seed=seed)
    generated = (BABBLE,) if noise_files else (BABBLE, *COLORS)  # babble stays beside real noise (docs/tts_corpus.md)
    noise_jobs = {noise / f"{kind}.wav": functools.partial(make, kind=kind) for kind in generated}
    noise_jobs |= {noise / f"{p.stem}.wav": functools.partial(_convert, p) for p in noise_files}  # theirs win a name
    todo = [(1, functools.partial(job, path)) for path, job in noise_jobs.items() if not path.exists()]
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for voice in sorted(chosen, key=lambda v: SLOW_FIRST.index(v.engine)):
        names = [clip_name(word, voice, n) for word in words for n in range(clips_per_voice)]
        lists.get(voice.split, []).extend(names)
        if missing := sum(not (out / name).exists() for name in names):
            render = functools.partial(render_voice, out, voice, words, clips_per_voice, seed, styles, pitch_spread)
            todo.append((missing, render))

    begin = time.perf_counter()
    total = run_jobs(todo, jobs)
    for split, name in (("validation", VALIDATION_LIST), ("test", TESTING_LIST)):
        write_text(out / name, "".join(rel + "\n" for rel in sorted(lists[split])))
        if not lists[split]:
            warn(f"no chosen voice is in the {split} split, so {name} is empty")
    clips = len(words) * len(chosen) * clips_per_voice
    console.print(
        f"{out}: {clips} clips ({len(words)} words x {len(chosen)} voices x {clips_per_voice}), "
        f"{total} files written in {time.perf_counter() - begin:.0f} s",
        highlight=False,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """``kws synth``: parse ``argv`` and render the corpus; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kws synth",
        description="Render words with espeak-ng, flite, festival and piper voices into a Speech Commands-layout "
        "corpus.",
    )
    add = parser.add_argument
    add(
        "--words",
        help=f"comma-separated words and presets: {', '.join(PRESETS)} (the gsc presets both render all "
        f"35 words; other-words: {len(PRESETS['other-words'])} other English words for _unknown_; near-words: "
        f"{len(PRESETS['near-words'])} near-homophones of the ten commands, such as yeah, cup, lift, goal)",
    )
    add("--out", type=Path, help="output folder: new, empty, or an unfinished corpus to complete")
    add("--clips-per-voice", type=int, default=DEFAULT_CLIPS_PER_VOICE, help="clips per word and voice (default: 1)")
    add("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    add("--jobs", type=int, default=os.cpu_count(), help="worker processes (default: %(default)s, the CPU count)")
    add(
        "--noise-dir",
        type=Path,
        help="folder of noise recordings for _background_noise_ instead of the generated "
        "white, pink and brown noise (the generated babble of training voices stays)",
    )
    add("--voices", default="default", help="comma-separated globs over voice ids (see --list-voices), 'all', or "
        "'default' (the default): every accent and other engine's voice, each espeak-ng variant once")  # fmt: skip
    add(
        "--styles",
        default=",".join(DEFAULT_STYLES),
        help=f"comma-separated speaking styles that each clip draws "
        f"one of, from {', '.join(STYLES)}: the intonation of the word alone, asked, exclaimed or listed (espeak-ng "
        "and piper voices; default: %(default)s)",
    )
    add(
        "--pitch-spread",
        type=float,
        default=DEFAULT_PITCH_SPREAD,
        help="how far each clip's pitch is drawn from "
        "the voice's own, 0-1: 0 keeps it, 1 (the default) reaches +-50 %% on espeak-ng, x1.3 or /1.3 on flite and "
        "festival's diphone voices, x1.15 or /1.15 by resampling on festival's HTS voice and piper",
    )
    add("--list-voices", action="store_true", help="list the installed voices with engine, split and default set")
    args = parser.parse_args(argv)
    if args.list_voices:
        chosen = {v.id for v in default_voices()}
        for v in available_voices():
            default = "default" if v.id in chosen else ""
            console.print(f"{v.engine:<10} {v.id:<40} {v.split:<11} {default}", highlight=False)
        return 0
    if args.words is None or args.out is None:
        parser.error("--words and --out are required")
    synthesize(
        args.words,
        args.out,
        args.clips_per_voice,
        args.seed,
        args.jobs,
        args.voices.split(","),
        args.noise_dir,
        args.styles.split(","),
        args.pitch_spread,
    )
    return 0

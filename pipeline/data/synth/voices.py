"""The TTS engines and their voices: which are installed, their ids and families (the split rule), and the default
and chosen sets of ``kws synth --voices``."""

from __future__ import annotations

import fnmatch
import functools
import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.console import warn
from pipeline.errors import DataError

ESPEAK, FLITE, FESTIVAL, PIPER = "espeak-ng", "flite", "festival", "piper"
ENGINES = (ESPEAK, FLITE, FESTIVAL, PIPER)
SLOW_FIRST = (PIPER, FLITE, FESTIVAL, ESPEAK)  # the order the voice jobs start in: the slowest voices first
INSTALL = "apt-get install -y espeak-ng flite"  # the engines the tests need
FESTIVAL_PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"  # the English voices in Debian
INSTALLS = {  # what brings each engine (scripts/setup.sh installs them all)
    ESPEAK: "apt-get install -y espeak-ng",
    FLITE: "apt-get install -y flite",
    FESTIVAL: f"apt-get install -y {FESTIVAL_PACKAGES}",
    PIPER: "pip install 'kws-pipeline[voices]'",
}
# festival's kal and slt are the speakers of flite's kal and slt, so they are held out with them
TEST_FAMILIES = ("flite", "espeak-en-gb-scotland", "festival-kal-diphone", "festival-cmu-us-slt-arctic-hts")
VALIDATION_FAMILIES = ("espeak-en-029",)
FLITE_SKIP = ("awb_time",)  # a limited-domain voice that only speaks clock times
FESTIVAL_LANGUAGES = ("english", "us", "uk")  # folders of festival's voices/ that hold English voices
PIPER_PACKAGES = "*-piper-voice"  # the PyPI packages whose .onnx files (with their .onnx.json) are voices


@dataclass(frozen=True)
class Voice:
    """A TTS voice: ``engine`` is one of ``ENGINES``; ``name`` is what the engine is given."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        """Speaker id: ``espeak-<accent>[-<variant>]`` or ``<engine>-<voice>``, only ``[a-z0-9-]``."""
        engine = "espeak" if self.engine == ESPEAK else self.engine
        return re.sub(r"[^a-z0-9]+", "-", f"{engine}-{self.name}".lower()).strip("-")

    @property
    def family(self) -> str:
        """``flite``, ``espeak-<accent>``, or the id of a festival or piper voice: the unit of the split rule."""
        if self.engine == ESPEAK:
            return "espeak-" + self.name.split("+")[0]
        return "flite" if self.engine == FLITE else self.id

    @property
    def split(self) -> str:
        """``test``, ``validation`` or ``train``, by family."""
        if self.family in TEST_FAMILIES:
            return "test"
        return "validation" if self.family in VALIDATION_FAMILIES else "train"


def _run(cmd: list[str], stdin: str | None = None, made: Sequence[Path] = ()) -> bytes:
    """An engine's standard output; raises DataError if it fails or makes neither output nor the files ``made``."""
    proc = subprocess.run(cmd, input=None if stdin is None else stdin.encode(), capture_output=True)
    if proc.returncode or not (made or proc.stdout) or not all(path.is_file() for path in made):
        reason = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise DataError(f"`{' '.join(cmd[:4])} ...` failed ({reason})")
    return proc.stdout


def _espeak_voices() -> list[Voice]:
    accents = []
    for line in _run([ESPEAK, "--voices=en"]).decode().splitlines()[1:]:
        language, *rest = line.split()[1:]
        file = next((p for p in rest[1:] if "/" in p), "mb/")  # rest[0] is age/gender
        if language != "variant" and not file.startswith("mb/") and language not in accents:
            accents.append(language)  # mbrola voices need packages of their own
    variants = [
        m.group(1)
        for line in _run([ESPEAK, "--voices=variant"]).decode().splitlines()[1:]
        if (m := re.search(r"!v/(.+?)(?:\s{2,}|\s+\(|$)", line.rstrip()))
    ]
    return [Voice(ESPEAK, a + v) for a in sorted(accents) for v in ["", *(f"+{v}" for v in sorted(variants))]]


def _flite_voices() -> list[Voice]:
    names = _run([FLITE, "-lv"]).decode().partition(":")[2].split()
    return [Voice(FLITE, name) for name in sorted(names) if name not in FLITE_SKIP]


def _festival_voices() -> list[Voice]:
    locations = re.findall(r'\((\w+) \. "([^"]*)"\)', _run([FESTIVAL, "--pipe"], "(print voice-locations)").decode())
    return [Voice(FESTIVAL, name) for name, path in sorted(locations) if Path(path).parent.name in FESTIVAL_LANGUAGES]


def _piper_language(config: Path) -> str:
    return json.loads(config.read_text()).get("espeak", {}).get("voice", "")


@functools.cache
def _piper_models() -> dict[str, Path]:
    """The English voices of the installed ``*-piper-voice`` packages: model name -> ``.onnx`` file."""
    models = {}
    for dist in importlib.metadata.distributions():
        if not fnmatch.fnmatch(re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower(), PIPER_PACKAGES):
            continue
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            config = path.with_name(path.name + ".json")
            if path.suffix == ".onnx" and config.is_file() and _piper_language(config).startswith("en"):
                models[path.stem] = path
    return models


def _piper_voices() -> list[Voice]:
    return [Voice(PIPER, name) for name in sorted(_piper_models())]


def _has(engine: str) -> bool:
    if engine == PIPER:
        return importlib.util.find_spec("piper") is not None
    return shutil.which(engine) is not None


@functools.cache
def _voices_by_engine() -> dict[str, list[Voice]]:
    """Each engine's installed voices (none for a missing engine, with a one-line warning).

    Raises:
        DataError: no engine has a voice.
    """
    listers = {ESPEAK: _espeak_voices, FLITE: _flite_voices, FESTIVAL: _festival_voices, PIPER: _piper_voices}
    found = {engine: listers[engine]() if _has(engine) else [] for engine in ENGINES}
    if not any(found.values()):
        raise DataError(f"no TTS engine is installed: run `bash scripts/setup.sh` (or `{INSTALLS[ESPEAK]}`)")
    for engine, voices in found.items():
        if not voices:
            missing = "has no English voice" if _has(engine) else "is not installed"
            warn(f"{engine} {missing}, so its voices are left out: run `{INSTALLS[engine]}`")
    return found


def available_voices() -> list[Voice]:
    """Every installed voice: espeak-ng accents alone and x variants, then flite, festival and piper voices.

    Raises:
        DataError: no engine is installed (a missing one is a warning).
    """
    voices = [voice for voices in _voices_by_engine().values() for voice in voices]
    return list({v.id: v for v in voices}.values())


def default_voices() -> list[Voice]:
    """Every accent alone, every other engine's voice, and each espeak-ng variant once, dealt to the accents."""
    voices = available_voices()
    accents = sorted({v.name for v in voices if v.engine == ESPEAK and "+" not in v.name})
    variants = sorted({v.name.split("+")[1] for v in voices if "+" in v.name})
    dealt = {f"{accents[i % len(accents)]}+{variant}" for i, variant in enumerate(variants)}
    return [v for v in voices if v.engine != ESPEAK or "+" not in v.name or v.name in dealt]


def select_voices(patterns: Sequence[str] | None = None) -> list[Voice]:
    """The default voices (``None`` or ``["default"]``), or those whose id matches a glob (``all`` is ``*``).

    Raises:
        DataError: a pattern matches no installed voice, or names an engine that is not installed.
    """
    if not patterns or list(patterns) == ["default"]:
        return default_voices()
    voices = available_voices()
    chosen: set[str] = set()
    for pattern in patterns:
        ids = fnmatch.filter([v.id for v in voices], "*" if pattern == "all" else pattern)
        if not ids:
            literal = re.split(r"[*?\[]", pattern)[0]  # the engine a pattern names, if any
            for engine, found in _voices_by_engine().items():
                prefix = Voice(engine, "").id + "-"
                if not found and literal and (literal.startswith(prefix) or prefix.startswith(literal)):
                    raise DataError(f"--voices {pattern!r} asks for {engine} voices, which are not installed: "
                                    f"run `{INSTALLS[engine]}`")  # fmt: skip
            raise DataError(f"--voices {pattern!r} matches no installed voice (kws synth --list-voices lists them)")
        chosen.update(ids)
    return [v for v in voices if v.id in chosen]

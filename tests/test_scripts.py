"""The scripts behind the README's figures: each refuses bad arguments and missing inputs in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CROSSVAL_FOLDERS = ["--synth", "none", "--real-train", ".", "--real-test", "."]


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("crossval.py", [*CROSSVAL_FOLDERS, "--experiments", "nope"], "unknown experiment(s) nope"),
        ("crossval.py", [*CROSSVAL_FOLDERS, "--folds", "1"], "--folds must be at least 2"),
        ("crossval.py", CROSSVAL_FOLDERS, "is not a folder"),
        ("ship_model.py", ["--ckpt", "missing.ckpt", "--name", "x", "--experiment", "nope", "--about", "a",
                           "--recipe", "r", "--figures", "missing.json"], "has no results for nope"),
        ("model_zoo.py", ["--synth", "a", "--real", "b", "--models", "nope"], "unknown model(s) nope"),
        ("sim_to_real.py", ["--synth", "missing", "--real", "missing"], "no dataset at missing"),
        ("bench_transcribe.py", ["--ckpt", "missing.ckpt"], "missing.ckpt does not exist"),
        ("bench_latency.py", ["--ckpt", "missing.ckpt", "--source", "."], "missing.ckpt does not exist"),
        ("bench_streaming.py", ["--windowed", "missing.ckpt", "--streaming", "x", "--commands", "c",
                                "--other-words", "o"], "missing.ckpt does not exist"),
        ("held_out_voices.py", ["--ckpt", "missing.ckpt", "--corpus", "."], "missing.ckpt does not exist"),
        ("bench_data.py", ["--root", "missing"], "no dataset at missing"),
        ("bench_epoch.py", ["--corpus", "missing"], "no dataset at missing"),
        ("bench_whisper.py", ["--real", "missing", "--ckpt", "missing.ckpt"], "error:"),  # with or without the extra
        ("mic_demo.py", ["--input-file", "missing.wav"], "missing.wav: no such file"),
        ("stream_benchmark.py", ["--model", "x=missing.ckpt", "--speech", "."], "missing.ckpt does not exist"),
        ("stream_benchmark.py", ["--model", "nameless", "--speech", "."], "--model takes NAME=PATH"),
        ("stream_benchmark.py", ["--model", "x=missing.ckpt", "--real", "missing"], "is not a folder"),
        ("word_peaks.py", ["--ckpt", "x.ckpt", "missing.wav"], "has no truth CSV beside it"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line(script: str, args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "scripts").glob("*.py")))
def test_every_script_explains_its_flags(script: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr
    options = proc.stdout.split("options:", 1)[1]
    entries = re.split(r"\n(?=  -)", "\n" + options.strip("\n"))[1:]  # one per flag, with its wrapped help lines
    assert len(entries) > 1  # --help and the script's own flags
    for entry in entries:
        first, *rest = entry.splitlines()
        assert len(re.split(r"\s{2,}", first.strip())) > 1 or any(line.strip() for line in rest), entry

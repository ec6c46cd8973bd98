"""The torch-free runtime: ``kws export``, and transcription, prediction and the live path on the exported
model in a process where PyTorch cannot be imported; bad model files are one sentence."""

from __future__ import annotations

import ast
import json
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import TONE_DETECTOR, word_sequence

import pipeline.runtime
from pipeline.cli import main as kws
from pipeline.runtime.audio import save_audio
from pipeline.runtime.onnx_model import OnnxModel

TRAINING_STACK = ("torch", "torchaudio", "lightning", "librosa", "torchmetrics", "onnx", "jsonargparse", "matplotlib")
# runs kws in a process whose imports of the training stack fail, and says whether any got imported anyway
WITHOUT_TORCH = f"""
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_STACK!r}:
            raise ImportError(f"blocked: {{name}}", name=name)
sys.meta_path.insert(0, Blocked())
if sys.argv[1] == "--python":
    exec(sys.argv[2])
    status = 0
else:
    from pipeline.cli import main
    status = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in {TRAINING_STACK!r}]
sys.exit(status)
"""


def kws_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    assert kws(["export", str(trained), "--out", str(out)]) == 0
    return out


def test_export_writes_labels_and_settings_and_refuses_to_overwrite(exported: Path, trained: Path, capsys) -> None:
    model = OnnxModel(exported)
    hparams = torch.load(trained, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert model.labels == hparams["labels"] and model.config == hparams["features"]
    assert (model.sample_rate, model.win_length, model.hop_length) == (16000, 480, 160)
    capsys.readouterr()
    assert kws(["export", str(trained), "--out", str(exported)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_runtime_transcribes_without_torch(exported: Path, trained: Path, tmp_path: Path) -> None:
    wav = tmp_path / "words.wav"
    save_audio(wav, word_sequence(["yes", "no", "up"], seed=5))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TONE_DETECTOR.items()]
    light = kws_without_torch("transcribe", str(wav), "--model", str(exported), "--format", "jsonl", *flags)
    assert light.returncode == 0, light.stderr
    words = [json.loads(line)["word"] for line in light.stdout.splitlines()]
    assert words == ["yes", "no", "up"]
    command = [sys.executable, "-m", "pipeline", "transcribe", str(wav), "--ckpt", str(trained), "--runtime", "torch"]
    full = subprocess.run([*command, "--format", "jsonl", *flags], capture_output=True, text=True)
    assert [json.loads(line)["word"] for line in full.stdout.splitlines()] == words  # the PyTorch path agrees
    predicted = kws_without_torch("predict", str(wav), "--model", str(exported), "--format", "json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)[0]["label"] == "yes"  # the file's first second
    live = kws_without_torch("live", "--input-file", str(wav), "--model", str(exported), *flags)
    assert live.returncode == 0 and "3 words" in live.stdout, live.stderr


def test_without_torch_the_training_commands_say_what_to_install(trained: Path, tmp_path: Path) -> None:
    for args in (["fit", "--help"], ["export", str(trained), "--out", "x.onnx"]):
        proc = kws_without_torch(*args)
        assert proc.returncode == 2 and "pip install 'kws-pipeline[train]'" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    save_audio(tmp_path / "a.wav", np.zeros(16000, np.float32))
    proc = kws_without_torch("transcribe", str(tmp_path / "a.wav"), "--ckpt", str(trained))
    assert proc.returncode == 2 and "needs PyTorch" in proc.stderr and "--model" in proc.stderr, proc.stderr


def test_every_torch_free_command_runs_without_torch(exported: Path, tone_corpus: Path, tmp_path: Path) -> None:
    stream = tmp_path / "stream.wav"
    made = kws_without_torch("make-stream", "--source", str(tone_corpus), "--out", str(stream), "--minutes", "0.3")
    assert made.returncode == 0 and stream.exists() and stream.with_suffix(".csv").exists(), made.stderr
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TONE_DETECTOR.items()]
    noise = tone_corpus / "_background_noise_"
    scored = kws_without_torch("evaluate-stream", str(stream), "--model", str(exported), "--negatives", str(noise),
                               "--tune", "--fa-budget", "100", *flags)  # fmt: skip
    assert scored.returncode == 0 and "best detector settings" in scored.stdout, scored.stderr
    assert "100.0%" in scored.stdout.split("FA/hour")[1].splitlines()[2]  # the best point finds the tone words
    listed = kws_without_torch("models")
    assert listed.returncode == 0 and "kws12" in listed.stdout, listed.stderr
    api = kws_without_torch("--python", f"from pipeline import Spotter; s = Spotter({str(exported)!r}, threshold=0.5); "
                            f"print([w.word for w in s.transcribe({str(stream)!r})])")  # fmt: skip
    assert api.returncode == 0 and api.stdout.startswith("["), api.stderr
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    corpus = tmp_path / "corpus"
    synth = kws_without_torch("synth", "--out", str(corpus), "--words", "yes,no", "--voices", "espeak-en-029",
                              "--clips-per-voice", "1", "--noise-dir", str(noise), "--jobs", "1")  # fmt: skip
    assert synth.returncode == 0, synth.stderr
    assert sorted(p.name for p in (corpus / "_background_noise_").iterdir() if p.suffix == ".wav")
    assert len(list((corpus / "yes").glob("*.wav"))) == 1


def _plain_onnx(path: Path, metadata: dict[str, str] | None = None) -> Path:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.write_text("not a model"), p)[1], "is not an ONNX model"),
        (lambda p: _plain_onnx(p), "is not a kws export: its metadata lacks"),
        (lambda p: _plain_onnx(p, {k: "2" for k in ("kws_format", "sample_rate", "win_length", "hop_length",
                                                    "n_features", "window_frames")} | {"labels": '["a", "b"]',
                                                                                       "features": "{}"}),
         "is an ONNX model of another shape"),
    ],
)  # fmt: skip
def test_bad_model_files_are_one_sentence(make, phrase: str, tmp_path: Path) -> None:
    path = make(tmp_path / "model.onnx")
    wav = tmp_path / "a.wav"
    save_audio(wav, np.zeros(16000, np.float32))
    proc = kws_without_torch("transcribe", str(wav), "--model", str(path))
    assert proc.returncode == 2 and phrase in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


RUNTIME = Path(pipeline.runtime.__file__).parent
RUNTIME_MAY_IMPORT = ("pipeline.runtime", "pipeline.errors", "pipeline.files", "pipeline.console")
CHECKPOINT_LOADER = ("spotter.py", "load_checkpoint", "pipeline.train.model")  # the one way into training (.ckpt)


def _imports(node: ast.AST, function: str = "") -> list[tuple[str, str]]:
    """Every module imported anywhere under ``node`` (module level, ``if``/``try`` blocks, functions, methods), with
    the innermost function it is imported in ("" outside any)."""
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            found += [(function, alias.name) for alias in child.names]
        elif isinstance(child, ast.ImportFrom) and child.module:
            found.append((function, child.module))
        inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
        found += _imports(child, inner)
    return found


def test_the_runtime_imports_no_training_package_and_nothing_of_training_or_data() -> None:
    """The runtime's imports, read from its code; then every runtime and data module imported without torch."""
    files = sorted(RUNTIME.rglob("*.py"))
    assert {f.name for f in files} >= {"audio.py", "onnx_model.py", "streaming.py", "decision.py", "spotter.py"}
    for file in files:
        for function, module in _imports(ast.parse(file.read_text())):
            top = module.split(".")[0]
            assert top not in TRAINING_STACK, f"{file.name} imports {module}"
            if top == "pipeline" and not module.startswith(RUNTIME_MAY_IMPORT):
                assert (file.name, function, module) == CHECKPOINT_LOADER, f"{file.name}:{function} imports {module}"
    modules = [f"pipeline.{package}.{m.name}" for package in ("runtime", "data")  # the data generators too
               for m in pkgutil.iter_modules([str(RUNTIME.parent / package)])]  # fmt: skip
    loaded = kws_without_torch("--python", f"import importlib; [importlib.import_module(m) for m in {modules!r}]")
    assert loaded.returncode == 0, loaded.stderr  # and none of the stack got imported on the way (WITHOUT_TORCH)

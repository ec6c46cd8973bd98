"""`kws fit` / `kws test` end to end on a generated corpus: checkpoint, report, resume, refusals."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_archive

from pipeline.cli import TOOLS, TRAINING, main
from pipeline.train.model import load_model
from pipeline.train.module import KWSModule

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "configs" / "tts_mfcc.yaml")  # an MFCC recipe: the mechanics, fast


def _fit(root: Path, *extra: str) -> int:
    return main(["fit", "--config", RECIPE, f"--data.root={root}", "--data.cache_dir=cache",
                 "--trainer.max_epochs=2", "--data.batch_size=32", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tone_corpus: Path) -> Path:
    """A run folder made by `kws fit` (two epochs on the tone corpus)."""
    work = tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        assert _fit(tone_corpus) == 0
    return work / "runs" / "tts_mfcc"


def test_fit_writes_a_self_contained_checkpoint(trained: Path) -> None:
    for name in ("config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (trained / name).is_file(), name
    assert list((trained / "logs").glob("version_*/metrics.csv"))
    ckpt = torch.load(trained / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert hparams["labels"][:2] == ["_silence_", "_unknown_"] and len(hparams["labels"]) == 12
    assert hparams["features"]["kind"] == "mfcc" and hparams["features"]["hop_ms"] == 10.0
    module = KWSModule.load_from_checkpoint(trained / "checkpoints" / "best.ckpt", map_location="cpu").eval()
    assert module.labels == hparams["labels"]
    assert module(torch.zeros(1, 16000)).shape == (1, 12)


def test_test_prints_and_writes_the_report(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = make_archive(tmp_path / "archive", ["yes", "no", "up", "down"], ["cat", "bird"], speakers=2)
    monkeypatch.chdir(trained.parent.parent)
    ckpt = trained / "checkpoints" / "best.ckpt"
    code = main(["test", "--config", str(trained / "config.yaml"), "--ckpt_path", str(ckpt),
                 f"--data.root={archive}", "--data.cache_dir=null"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out and "recall" in out
    for word in ("yes", "down", "_unknown_", "_silence_"):
        assert word in out
    with open(ckpt.parent / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == KWSModule.load_from_checkpoint(ckpt, map_location="cpu").labels
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == 2 * 4 + 2 * 2 + 2  # every clip counted once
    assert (ckpt.parent / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # the checkpoint alone is enough: no --config
    assert main(["test", "--ckpt_path", str(ckpt), f"--data.root={archive}", "--data.cache_dir=null"]) == 0
    # labels have one source, the data task: a checkpoint of another task is refused in one sentence
    capsys.readouterr()
    assert main(["test", "--ckpt_path", str(ckpt), f"--data.root={archive}", "--data.task=35"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the checkpoint's labels" in err and "differ from the data task's" in err and len(err.splitlines()) == 1


def test_validate_scores_the_validation_split(trained: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(trained.parent.parent)
    ckpt = trained / "checkpoints" / "best.ckpt"
    assert main(["validate", "--config", str(trained / "config.yaml"), "--ckpt_path", str(ckpt)]) == 0
    assert "val_acc" in capsys.readouterr().out


def test_the_audio_rate_has_one_source(tone_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data module decodes and augments at the front end's rate: an 8 kHz model trains on 8 kHz clips."""
    monkeypatch.chdir(tmp_path)
    assert _fit(tone_corpus, "--model.features.sample_rate=8000", "--model.features.f_max=3800", "--run=rate8k",
                "--trainer.max_epochs=1", "--trainer.limit_train_batches=2") == 0  # fmt: skip
    ckpt = tmp_path / "runs" / "rate8k" / "checkpoints" / "last.ckpt"
    assert main(["test", "--ckpt_path", str(ckpt), f"--data.root={tone_corpus}", "--data.cache_dir=cache"]) == 0
    [cache] = (tmp_path / "cache").glob("clips-*.npy")  # kws test found the clips that fit decoded
    assert np.load(cache, mmap_mode="r").shape[1] == 8000  # one second at 8 kHz
    model = load_model(ckpt, runtime="torch")
    assert model.front_end.config.sample_rate == 8000 and model(torch.zeros(1, 8000)).shape == (1, 12)


def test_resume_and_refusal_to_overwrite(
    trained: Path, tone_corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(trained.parent.parent)
    assert _fit(tone_corpus) == 2  # a second run over the first one
    assert "already holds a run" in capsys.readouterr().err
    logs = sorted((trained / "logs").iterdir())
    steps = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert _fit(tone_corpus, "--trainer.max_epochs=3", "--ckpt_path=last") == 0
    last = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == steps * 3 // 2  # two epochs restored, one more trained
    new_logs = sorted(set((trained / "logs").iterdir()) - set(logs))
    assert len(new_logs) == 1 and len(logs) == 1  # the refused run left nothing; the resumed one logs apart
    epochs = {row.split(",")[0] for row in (new_logs[0] / "metrics.csv").read_text().splitlines()[1:]}
    assert "0" not in epochs


def test_missing_dataset_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert _fit(tmp_path / "no_such_folder") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no dataset at") and "Traceback" not in err and len(err.splitlines()) == 1


def test_module_entry_point_help() -> None:
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=True)
    for command in (*TRAINING, *TOOLS):
        assert command in out.stdout
    fit_help = subprocess.run([sys.executable, "-m", "pipeline", "fit", "--help"], capture_output=True, text=True)
    assert fit_help.returncode == 0 and "--data.task" in fit_help.stdout and "--model.model.width" in fit_help.stdout


@pytest.mark.parametrize("command", [*TRAINING, *TOOLS])
def test_every_command_has_help_and_refuses_bad_flags_in_one_line(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and "usage" in capsys.readouterr().out.lower()
    with pytest.raises(SystemExit) as done:
        main([command, "--no-such-flag"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "error" in err and "Traceback" not in err


def test_bad_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    for ckpt, message in ((tmp_path / "missing.ckpt", "does not exist"), (junk, "is not a PyTorch checkpoint")):
        assert main(["test", "--ckpt_path", str(ckpt), f"--data.root={tmp_path}"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_compile_and_bf16_switches_keep_the_checkpoint_portable(
    tone_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _fit(tone_corpus, "--model.compile=true", "--trainer.precision=bf16-mixed", "--trainer.max_epochs=1",
                "--model.model.name=tcresnet", "--model.model.size=8", "--run=switches", "--model.mixup=0.2",
                "--data.augment.speed=[0.9, 1.1]") == 0  # fmt: skip
    ckpt = tmp_path / "runs" / "switches" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["compile"] is True and state["hyper_parameters"]["mixup"] == 0.2
    config = (tmp_path / "runs" / "switches" / "config.yaml").read_text()
    assert "speed:\n    - 0.9\n    - 1.1" in config
    plain = KWSModule(labels=state["hyper_parameters"]["labels"], model=state["hyper_parameters"]["model"])
    assert set(state["state_dict"]) == set(plain.state_dict())  # compiled in place: the keys of the plain model
    model = load_model(ckpt, runtime="torch")
    assert model(torch.zeros(1, 16000)).dtype == torch.float32


def test_a_run_that_failed_before_its_first_checkpoint_can_be_started_again(
    tone_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _fit(tone_corpus, "--run=retry", "--model.model.name=tcresnet", "--model.model.size=s") == 2
    assert "model.size of tcresnet" in capsys.readouterr().err
    assert (
        _fit(
            tone_corpus, "--run=retry", "--model.model.name=tcresnet", "--model.model.size=8", "--trainer.max_epochs=1"
        )
        == 0
    )
    assert (tmp_path / "runs" / "retry" / "checkpoints" / "last.ckpt").is_file()

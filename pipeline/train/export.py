"""``kws export``: a checkpoint as one ONNX file that the torch-free runtime runs (``kws transcribe --model``).

The file holds the front end (from raw samples at the model's rate, its STFT as a convolution that ONNX
Runtime runs fast) and the acoustic model, with the labels and front-end settings in its metadata
(:meth:`pipeline.train.model.KWSModel.to_onnx`). The export checks itself: the file's window scores must equal the
checkpoint's within ``TOLERANCE`` on random and on speech-like audio, or the command fails. ``--int8`` also
writes ONNX Runtime's dynamic int8 quantization of the acoustic model and prints how much it changes.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.console import console
from pipeline.data.speech_commands import SILENCE, UNKNOWN, scan
from pipeline.errors import AudioError, KWSError, first_line
from pipeline.files import atomic_path
from pipeline.runtime.audio import clip_samples, fit_length, read_audio
from pipeline.runtime.bundled import resolve_model
from pipeline.runtime.decision import STRIDE_MS
from pipeline.runtime.onnx_model import OnnxModel
from pipeline.runtime.streaming import (
    Classifier,
    is_streaming,
    offline_scores,
    run_steps,
    settings_for,
    stream_probs,
    window_probs,
    windowing_of,
)
from pipeline.train.model import KWSModel, load_model

TOLERANCE = 1e-3  # largest difference of any window's softmax score between the checkpoint and its export
CHECK_SECONDS = 8.0  # length of each self-check signal
CHECK_CHUNK = 37  # most frames per call of a streaming model in the self-check: chunks that straddle the windows
TIMING_WINDOWS = 256  # windows scored to time a model
EXCLUDED = "front_end"  # nodes whose name holds this stay in float: the front end is not quantized


def check_signals(sample_rate: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The self-check audio: white noise, and a speech-like signal (voiced, gliding harmonics with moving
    formant-like peaks, in syllables over faint noise) at the model's rate."""
    rng = np.random.default_rng(seed)
    n = round(CHECK_SECONDS * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)  # a gliding voice, 80-160 Hz
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    formant = 700 + 500 * np.sin(2 * np.pi * 1.3 * t)
    voice = sum(np.exp(-((((k * pitch) - formant) / 400) ** 2)) * np.sin(k * phase) / k for k in range(1, 30))
    syllables = (np.sin(2 * np.pi * 2.5 * t) > 0.2).astype(float)
    speech = 0.3 * voice * syllables / np.abs(voice).max() + 0.003 * rng.normal(size=n)
    return {"white noise": (0.1 * rng.normal(size=n)).astype(np.float32), "speech-like": speech.astype(np.float32)}


def streamed_scores(model: Classifier, audio: np.ndarray) -> np.ndarray:
    """Softmax scores of the windows of ``audio``'s frames computed all at once, as the streaming engine
    computes them (the default stride); a streaming model runs over them in chunks of at most ``CHECK_CHUNK``
    frames, carrying its state."""
    w = windowing_of(model, STRIDE_MS)
    rows = model.features(audio)
    if is_streaming(model):
        return stream_probs(model, run_steps(model, rows, CHECK_CHUNK), w)
    windows = sliding_window_view(rows, w.frames, axis=1)[:, :: w.stride_frames]
    return window_probs(model, windows.transpose(1, 0, 2))


def largest_difference(a: Classifier, b: Classifier, signals: dict[str, np.ndarray]) -> float:
    """The largest difference of any window's softmax score between two models on ``signals``, with every
    window's features computed alone (the offline reference) and with the whole signal's (the stream's)."""
    return max(float(np.abs(scores(a, x) - scores(b, x)).max())
               for x in signals.values() for scores in (offline_scores, streamed_scores))  # fmt: skip


def labelled_clips(model: Classifier, root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The one-second clips of a Speech Commands-layout folder's test split (its list files, else the speaker
    hash; an archive-layout folder is all test) and their classes: a word the model knows is its own class, any
    other word ``_unknown_`` (when the model has it), ``_silence_`` clips ``_silence_``; other clips and
    unreadable files are left out."""
    index = {label: i for i, label in enumerate(model.labels)}
    window = clip_samples(model.sample_rate)
    clips, targets = [], []
    corpus = scan(root)
    for clip in corpus.clips:
        if corpus.layout != "archive" and corpus.split_of(clip, 10.0, 10.0) != "test":
            continue
        label = clip.word if clip.word in index else (UNKNOWN if clip.word != SILENCE else None)
        if label not in index:
            continue
        try:
            audio = read_audio(clip.path, model.sample_rate)
        except AudioError:
            continue
        clips.append(fit_length(audio, window))
        targets.append(index[label])
    if not clips:
        raise KWSError(f"{root} holds no readable test clips of the model's labels")
    return np.stack(clips), np.array(targets)


def accuracy(model: Classifier, clips: np.ndarray, targets: np.ndarray, batch: int = 64) -> float:
    """Share of ``clips`` whose top class is the target."""
    top = np.concatenate([model.logits(model.features(clips[i : i + batch])).argmax(-1)
                          for i in range(0, len(clips), batch)])  # fmt: skip
    return float((top == targets).mean())


def ms_per_window(model: Classifier, windows: np.ndarray) -> float:
    """Median time of the acoustic model per window, in batches of 32 (the engine's), on ``windows``."""
    times = []
    for i in range(0, len(windows), 32):
        start = time.perf_counter()
        window_probs(model, windows[i : i + 32])
        times.append((time.perf_counter() - start) * 1000 / len(windows[i : i + 32]))
    return float(np.median(times))


def quantize(model_bytes: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantization of the acoustic model's convolutions and matrix products."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load_from_string(model_bytes)
    keep = [node.name for node in graph.graph.node if EXCLUDED in node.name]
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model_bytes)
        root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process the graph goes to the root logger
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                             op_types_to_quantize=["Conv", "MatMul", "Gemm"])  # fmt: skip
        except Exception as err:  # the quantizer raises plain errors for graphs it cannot handle
            raise KWSError(f"int8 quantization failed ({first_line(err)[:160]}); the float export is written") from None
        finally:
            root.setLevel(level)
        return target.read_bytes()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kws export``."""
    parser = argparse.ArgumentParser(
        prog="kws export",
        description="Write a checkpoint as one ONNX file (front end + acoustic model + labels) for the torch-free "
        "runtime: kws transcribe --model FILE.",
    )
    parser.add_argument("ckpt", metavar="CKPT", help="checkpoint written by kws fit, or the name of a bundled model")
    parser.add_argument("--out", required=True, help="the .onnx file to write (atomically)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8-quantized variant beside it (OUT with .int8.onnx) and print what it changes",
    )
    parser.add_argument(
        "--check-data",
        metavar="FOLDER",
        help="Speech Commands-layout folder: print the accuracy of the checkpoint, the export and "
        "the int8 variant on its test split (speakers the model must never have trained on)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite OUT (and its int8 variant) if they exist")
    return parser


def save_export_operating_point(path: str | Path, decision: dict[str, float]) -> None:
    """Write ``decision`` into the metadata of the export at ``path`` (atomically; the graph is unchanged)."""
    import json

    import onnx

    OnnxModel(path)  # one sentence if it is no kws export
    graph = onnx.load(str(path))
    kept = [p for p in graph.metadata_props if p.key != "decision"]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    graph.metadata_props.add(key="decision", value=json.dumps(dict(decision)))
    with atomic_path(path) as tmp:
        tmp.write_bytes(graph.SerializeToString())


def main(argv: list[str]) -> int:
    """Entry point of ``kws export``; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise KWSError(f"--out must name a .onnx file, not {out}")
    int8_out = out.with_suffix(".int8.onnx")
    for path in (out, int8_out) if args.int8 else (out,):
        if path.exists() and not args.force:
            raise KWSError(f"{path} already exists: choose another --out, or give --force to overwrite it")
    ckpt, card = resolve_model(args.ckpt)
    torch_model = load_model(ckpt, runtime="torch")
    assert isinstance(torch_model, KWSModel)
    if card is not None and not torch_model.decision:  # a bundled checkpoint from before operating points
        torch_model.decision = {"threshold": card.threshold}
    data = torch_model.to_onnx()
    exported = OnnxModel(data, name=str(out))
    signals = check_signals(exported.sample_rate)
    try:
        difference = largest_difference(torch_model, exported, signals)
    except Exception as err:  # ONNX Runtime's own error types: a graph that does not run is a failed export
        raise KWSError(f"the export of {ckpt} does not run in ONNX Runtime ({first_line(err)[:160]})") from None
    if difference > TOLERANCE:
        raise KWSError(f"the export does not reproduce {ckpt}: window scores differ by up to {difference:.2g} "
                       f"(tolerance {TOLERANCE:g})")  # fmt: skip
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    console.print(f"wrote {out} ({len(data) / 1024:.0f} KiB): {len(exported.labels)} labels, "
                  f"{exported.config['kind']} front end at {exported.sample_rate} Hz; window scores equal the "
                  f"checkpoint's within {difference:.1g} (tolerance {TOLERANCE:g}); operating point: "
                  f"{settings_for(exported).describe()}", highlight=False)  # fmt: skip
    checked = labelled_clips(exported, args.check_data) if args.check_data else None
    if checked is not None:
        console.print(f"accuracy on {len(checked[1])} clips of {args.check_data}: checkpoint "
                      f"{accuracy(torch_model, *checked):.2%}, export {accuracy(exported, *checked):.2%}",
                      highlight=False)  # fmt: skip
    if args.int8:
        small = quantize(data)
        int8 = OnnxModel(small, name=str(int8_out))
        with atomic_path(int8_out) as tmp:
            tmp.write_bytes(small)
        window = clip_samples(exported.sample_rate)
        windows = np.stack([exported.features(x[:window]) for x in signals.values()])
        windows = np.repeat(windows, TIMING_WINDOWS // len(windows), axis=0)
        speed = f"{ms_per_window(exported, windows):.3f} -> {ms_per_window(int8, windows):.3f} ms per window"
        console.print(f"wrote {int8_out} ({len(small) / 1024:.0f} KiB): window scores differ from float by up to "
                      f"{largest_difference(exported, int8, signals):.2g}; {speed}", highlight=False)  # fmt: skip
        if checked is not None:
            console.print(f"int8 accuracy: {accuracy(int8, *checked):.2%} (float {accuracy(exported, *checked):.2%})",
                          highlight=False)  # fmt: skip
    return 0

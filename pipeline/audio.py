"""Audio constants and I/O: every door reads audio through these functions.

Decoding is done with soundfile (libsndfile); resampling with torchaudio.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from pipeline.errors import AudioError, first_line
from pipeline.files import atomic_path

SAMPLE_RATE = 16000  # Hz, the rate of Speech Commands and of every model here
CLIP_SECONDS = 1.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
AUDIO_SUFFIXES = tuple("." + fmt.lower() for fmt in sf.available_formats())


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` or ``(frames,)`` array."""
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def resample(audio: torch.Tensor, orig_sr: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Resample along the last axis with torchaudio's band-limited sinc interpolation."""
    if orig_sr == sample_rate:
        return audio
    return AF.resample(audio, orig_sr, sample_rate)


def open_audio(file: str | os.PathLike | int, name: str | None = None) -> sf.SoundFile:
    """Open audio for block reading: a path, or a file descriptor (such as stdin's) left open on close.

    Raises:
        AudioError: named by ``name`` (default: the path): not audio, or a seekable file with no samples.
    """
    name = name or str(file)
    try:
        sound = sf.SoundFile(file, closefd=not isinstance(file, int))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise AudioError(f"{name}: cannot read audio ({first_line(err)})") from None
    if sound.seekable() and sound.frames == 0:
        sound.close()
        raise AudioError(f"{name}: the file holds no audio samples")
    return sound


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read a whole audio file as a mono float32 tensor at ``sample_rate``.

    Any format libsndfile reads, any rate, any channel count.

    Raises:
        AudioError: the file is missing, not audio, or holds no samples.
    """
    with open_audio(path) as sound:
        try:
            data = sound.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{path}: cannot decode audio ({first_line(err)})") from None
        sr = sound.samplerate
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    return resample(torch.from_numpy(np.ascontiguousarray(to_mono(data))), sr, sample_rate)


def fit_length(audio: torch.Tensor, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """Zero-pad at the end or crop the end so the last axis has ``length`` samples."""
    n = audio.shape[-1]
    if n >= length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - n))


def load_clip(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """Read a file as a fixed-length mono clip (padded or cropped to ``length``)."""
    return fit_length(load_audio(path, sample_rate), length)


def save_audio(path: str | os.PathLike, audio: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a 16-bit PCM WAV file atomically."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")

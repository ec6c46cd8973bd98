"""Audio constants and I/O: every door reads audio through these functions.

Decoding is done with soundfile (libsndfile); resampling with torchaudio's band-limited sinc kernel, here in
numpy (:class:`StreamResampler`), so that the inference path needs no PyTorch: nothing here imports torch.
"""

from __future__ import annotations

import math
import os

import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.errors import AudioError, first_line
from pipeline.files import atomic_path

SAMPLE_RATE = 16000  # Hz, the rate of Speech Commands and of every model here
CLIP_SECONDS = 1.0
CLIP_SAMPLES = round(SAMPLE_RATE * CLIP_SECONDS)
AUDIO_SUFFIXES = tuple("." + fmt.lower() for fmt in sf.available_formats())
LOWPASS_WIDTH = 6  # zero crossings of the sinc on each side (torchaudio's default)
ROLLOFF = 0.99  # cut-off as a share of the lower Nyquist frequency (torchaudio's default)


def clip_samples(sample_rate: int) -> int:
    """Samples in one clip (one model window) at ``sample_rate``."""
    return round(sample_rate * CLIP_SECONDS)


def frame_count(n_samples: int, win_length: int, hop_length: int) -> int:
    """Number of complete frames of ``win_length`` samples, ``hop_length`` apart, in ``n_samples`` samples."""
    return 0 if n_samples < win_length else 1 + (n_samples - win_length) // hop_length


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` or ``(frames,)`` array."""
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def sinc_kernel(orig_sr: int, new_sr: int) -> tuple[np.ndarray, int]:
    """torchaudio's ``sinc_interp_hann`` resampling kernel: ``(new, 2 * width + orig)`` float32 taps (rates
    divided by their gcd) and ``width``, the input samples it reaches to either side."""
    gcd = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // gcd, new_sr // gcd
    base = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_WIDTH * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None] / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx) * base
    t = np.clip(t, -LOWPASS_WIDTH, LOWPASS_WIDTH)
    window = np.cos(t * math.pi / LOWPASS_WIDTH / 2) ** 2
    t *= math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.where(t == 0, 1.0, np.sin(t) / t)
    return (kernel * window * (base / orig)).astype(np.float32), width


class StreamResampler:
    """Band-limited resampling of a stream: the same output samples whatever the chunk sizes.

    The resampler is a strided convolution: each block of ``orig`` input samples (rates divided by their gcd)
    gives ``new`` output samples from a kernel that reaches ``width`` samples to either side. The stream keeps
    those ``width`` samples of history and computes every block as soon as its input is there. The whole
    output equals torchaudio's ``resample`` to float rounding.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        gcd = math.gcd(orig_sr, new_sr)
        self.orig, self.new = orig_sr // gcd, new_sr // gcd
        self.kernel, self.width = sinc_kernel(orig_sr, new_sr)
        self.buffer = np.zeros(self.width, np.float32)  # left zero padding, as torchaudio pads
        self.received = 0
        self.sent = 0

    def _blocks(self) -> np.ndarray:
        size = self.kernel.shape[1]
        blocks = (len(self.buffer) - size) // self.orig + 1 if len(self.buffer) >= size else 0
        if blocks <= 0:
            return np.zeros(0, np.float32)
        windows = sliding_window_view(self.buffer[: (blocks - 1) * self.orig + size], size)[:: self.orig]
        self.buffer = self.buffer[blocks * self.orig :]
        return (windows @ self.kernel.T).reshape(-1)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Take input samples; return the output samples they complete."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.buffer = np.concatenate([self.buffer, samples])
        self.received += len(samples)
        out = self._blocks()
        self.sent += len(out)
        return out

    def flush(self) -> np.ndarray:
        """End of input: the remaining output samples (zero padding on the right, as torchaudio pads)."""
        self.buffer = np.concatenate([self.buffer, np.zeros(self.width + self.orig, np.float32)])
        total = -(-self.new * self.received // self.orig)
        out = self._blocks()[: max(0, total - self.sent)]
        self.sent += len(out)
        return out


def resample(audio: np.ndarray, orig_sr: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float signal with the band-limited sinc kernel (:class:`StreamResampler` in one go)."""
    audio = np.asarray(audio, np.float32)
    if orig_sr == sample_rate:
        return audio
    stream = StreamResampler(orig_sr, sample_rate)
    return np.concatenate([stream.push(audio), stream.flush()])


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


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a whole audio file as a mono float32 array at ``sample_rate``.

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
    return resample(np.ascontiguousarray(to_mono(data)), sr, sample_rate)


def fit_length(audio: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad at the end or crop the end so the last axis has ``length`` samples."""
    return np.pad(audio[..., :length], [(0, 0)] * (audio.ndim - 1) + [(0, max(0, length - audio.shape[-1]))])


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a 16-bit PCM WAV file atomically (a torch tensor is taken too)."""
    if hasattr(audio, "detach"):  # a tensor
        audio = audio.detach().cpu().numpy()
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")

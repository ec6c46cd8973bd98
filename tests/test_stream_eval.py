"""The one definition of a false accept, the DET sweep and the tuner's ranking, on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.streams import TruthWord
from pipeline.runtime.decision import Detection, Settings
from pipeline.stream_eval import DetPoint, ScoredAudio, StreamStats, det_curve, replay, score_stream

VOCABULARY = {"yes", "no"}


def test_a_false_accept_is_every_detection_that_is_not_a_correct_command_word() -> None:
    truth = [TruthWord("yes", 1.0, 1.5), TruthWord("no", 4.0, 4.4), TruthWord("bed", 8.0, 8.5)]
    found = [
        Detection("yes", 1.1, 1.4, 0.9),  # correct
        Detection("yes", 4.0, 4.3, 0.9),  # wrong: "no" was said
        Detection("no", 12.0, 12.4, 0.9),  # in silence, far from any word
        Detection("no", 8.1, 8.4, 0.9),  # on a word that is not a command
    ]
    stats = score_stream(found, truth, VOCABULARY, seconds=36.0, tolerance_s=0.5)
    assert (stats.ground_truth, stats.correct, stats.wrong, stats.false_positives) == (2, 1, 2, 1)
    assert stats.false_accepts == 3
    assert stats.false_accepts_per_hour == pytest.approx(3 * 3600 / 36)
    # on audio without command words every detection is one
    negative = score_stream(found, [], VOCABULARY, seconds=3600.0, tolerance_s=0.5)
    assert (negative.false_accepts, negative.false_accepts_per_hour) == (4, 4.0)
    # a second detection of a word already found is not a second correct one
    twice = score_stream(found[:1] * 2, truth, VOCABULARY, seconds=36.0, tolerance_s=0.5)
    assert (twice.correct, twice.false_accepts) == (1, 1)


class _Labels:
    """The labels and geometry replay needs (no audio is scored here)."""

    labels = ["_silence_", "_unknown_", "yes", "no"]
    sample_rate, win_length, hop_length, n_features = 16000, 480, 160, 40
    decision: dict = {}


def _scored(rows: list[tuple[int, float]], truth: list[TruthWord], name: str) -> ScoredAudio:
    """Window outputs at a 100 ms stride: row i's top class and its score."""
    probs = np.full((len(rows), 4), 0.0)
    for i, (label, score) in enumerate(rows):
        probs[i] = (1 - score) / 3
        probs[i, label] = score
    return ScoredAudio(name, probs, truth, seconds=len(rows) * 0.1 + 0.9, stride_ms=100.0, tail=0, clip=False)


def test_the_det_curve_trades_words_found_for_false_accepts() -> None:
    rng = np.random.default_rng(0)
    quiet = [(0, 0.9)] * 20
    # a stream: "yes" heard at scores 0.6, 0.8, 0.95 in three windows each; 1 s windows, 100 ms apart, so a word
    # heard in windows i..i+2 lies around 0.1 * (i + 2) + 0.4 s
    rows = quiet + [(2, 0.6)] * 3 + quiet * 2 + [(2, 0.8)] * 3 + quiet * 2 + [(2, 0.95)] * 3 + quiet
    truth = [TruthWord("yes", 0.1 * i + 0.5, 0.1 * i + 0.7) for i in (20, 63, 106)]
    stream = _scored(rows, truth, "stream")
    negatives = _scored([(int(rng.choice([0, 1])), 0.9) if rng.random() > 0.05 else (3, float(rng.uniform(0.4, 1)))
                         for _ in range(3000)], [], "speech")  # fmt: skip
    settings = Settings(0.5, 100.0, 100.0, 500.0)
    points = det_curve(_Labels(), settings, [stream], [negatives], (0.5, 0.7, 0.9, 0.99))
    assert [p.found for p in points] == pytest.approx([100.0, 200 / 3, 100 / 3, 0.0])
    false_accepts = [p.false_accepts_per_hour for p in points]
    assert false_accepts == sorted(false_accepts, reverse=True) and false_accepts[0] > 0
    # each point is the engine's figure at that threshold
    for p in points:
        assert p.negatives["speech"] == replay(_Labels(), negatives, p.settings)
    assert isinstance(points[0], DetPoint) and points[0].settings.threshold == 0.5


def test_stats_add_up() -> None:
    a, b = StreamStats(2, 1, 1, 0, 1, 10.0), StreamStats(3, 3, 2, 1, 0, 20.0)
    assert a + b == StreamStats(5, 4, 3, 1, 1, 30.0)
    assert (a + b).false_accepts_per_hour == pytest.approx(2 * 3600 / 30)

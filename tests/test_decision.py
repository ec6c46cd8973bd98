"""The decision rule: taking windows in bulk (``Decider.steps``) decides exactly as one window at a time; patience,
the clip rule and the operating point."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import KWSError
from pipeline.runtime.decision import Decider, Settings, Windowing, decide

LABELS = ["_silence_", "_unknown_", "a", "b", "c"]
WINDOWING = Windowing.of(16000, 480, 160, 10.0)


def _bursts(rng: np.random.Generator, n: int, threshold: float) -> np.ndarray:
    """Softmax rows with bursts of one label (words), some rows exactly at the threshold."""
    logits = rng.normal(0, 1, (n, len(LABELS)))
    for _ in range(6):
        start = rng.integers(0, n)
        logits[start : start + rng.integers(1, 80), rng.integers(0, len(LABELS))] += rng.uniform(1, 6)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    ties = rng.random(n) < 0.05
    probs[ties] = (1 - threshold) / (len(LABELS) - 1)
    probs[ties, 2] = threshold
    return probs


@pytest.mark.parametrize("seed", range(40))
def test_bulk_steps_decide_as_single_steps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    threshold = float(rng.choice([0.3, 0.5, 0.8]))
    hold = [None, 0.0, 30.0][seed % 3]
    settings = Settings(
        threshold,
        10.0,
        10.0 * int(rng.choice([1, 2, 5])),
        float(rng.choice([0, 50, 300])),
        hold,
        patience=int(rng.choice([1, 2, 4])),
    )
    probs = _bursts(rng, int(rng.integers(1, 500)), threshold)
    one, bulk = Decider(LABELS, settings, WINDOWING), Decider(LABELS, settings, WINDOWING)
    expected = [d for i, row in enumerate(probs) for d in one.step(i, row)] + one.finish()
    found, i = [], 0
    while i < len(probs):
        size = int(rng.integers(1, 60))
        found += bulk.steps(i, probs[i : i + size])
        i += size
    assert found + bulk.finish() == expected
    for name in ("smoothed", "armed", "run_first", "run_last", "recent"):
        np.testing.assert_array_equal(getattr(bulk, name), getattr(one, name), err_msg=name)


def _one_hot(rows: list[int], score: float = 0.9) -> np.ndarray:
    """Softmax-like rows whose top class is ``rows[i]`` with ``score``."""
    probs = np.full((len(rows), len(LABELS)), (1 - score) / (len(LABELS) - 1))
    probs[np.arange(len(rows)), rows] = score
    return probs


@pytest.mark.parametrize("patience", [1, 2, 3, 4])
def test_patience_needs_that_many_windows_in_a_row(patience: int) -> None:
    # "a" (2) for one window, silence, then "b" (3) for three windows in a row
    probs = _one_hot([0, 2, 0, 0, 3, 3, 3, 0, 0, 0])
    found = decide(probs, LABELS, Settings(0.5, 10.0, 10.0, 0.0, patience=patience), WINDOWING)
    assert [d.word for d in found] == {1: ["a", "b"], 2: ["b"], 3: ["b"], 4: []}[patience]


def test_a_clip_is_decided_as_it_is_classified() -> None:
    settings = Settings(0.95, 10.0, 10.0, 0.0, patience=3)  # a threshold and patience one window never meets
    [word] = decide(_one_hot([3], 0.6), LABELS, settings, WINDOWING, clip=True)
    assert (word.word, word.start, word.score) == ("b", 0.0, pytest.approx(0.6))
    assert decide(_one_hot([3], 0.6), LABELS, settings, WINDOWING) == []  # the same window within a stream
    assert decide(_one_hot([1], 0.6), LABELS, settings, WINDOWING, clip=True) == []  # _unknown_ is no word
    [word] = decide(_one_hot([4, 0], 0.99), LABELS, Settings(0.5, 10.0, 10.0), WINDOWING, clip=True)
    assert word.word == "c"  # decided by the rule itself: the clip rule adds nothing


def test_settings_carry_their_operating_point() -> None:
    s = Settings(0.7, 100.0, 300.0, 500.0, hold_ms=0.0, patience=2)
    assert s.to_dict() == {
        "threshold": 0.7,
        "stride_ms": 100.0,
        "smooth_ms": 300.0,
        "suppression_ms": 500.0,
        "patience": 2,
    }  # the hold time is the door's
    assert Settings(**s.to_dict()) == Settings(0.7, 100.0, 300.0, 500.0, patience=2)
    with pytest.raises(KWSError, match="patience"):
        Settings(patience=0)

"""The decision rule: taking windows in bulk (``Decider.steps``) decides exactly as one window at a time."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decision import Decider, Settings, Windowing

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
    settings = Settings(threshold, 10.0, 10.0 * int(rng.choice([1, 2, 5])), float(rng.choice([0, 50, 300])), hold)
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

"""Hint sampling for training (Zhang et al. 2017): counts, patch contents, positions, global hints."""

from __future__ import annotations

import numpy as np
import pytest

from train.hints import (
    STOP_P,
    ab_distribution,
    global_hint,
    patch_sizes,
    place_hints,
    sample_global_hint,
    sample_local_hints,
)

CENTRES = np.array([[a, b] for a in range(-40, 50, 10) for b in range(-40, 50, 10)], np.float32)


def truth_ab(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-60, 60, (2, size, size)).astype(np.float32)  # (2, S, S)


def count_patches(mask: np.ndarray) -> int:
    import cv2

    n, _ = cv2.connectedComponents((mask[0] > 0).astype(np.uint8), connectivity=4)
    return n - 1


def test_patch_sizes_scale_zhangs_1_to_9_pixels_at_256() -> None:
    assert patch_sizes(256) == list(range(1, 10))
    assert patch_sizes(128) == [1, 2, 3, 4]
    assert min(patch_sizes(16)) == 1


def test_hint_count_is_geometric_with_p_one_eighth() -> None:
    """The number of hints: P(0) = 1/8 and mean (1 - p) / p = 7, as in the paper's code."""
    rng = np.random.default_rng(1)
    counts = []
    for _ in range(4000):
        n = int(rng.geometric(STOP_P)) - 1  # the draw sample_local_hints makes
        counts.append(n)
    counts_arr = np.array(counts)
    assert abs((counts_arr == 0).mean() - 1 / 8) < 0.02
    assert abs(counts_arr.mean() - 7) < 0.5
    # and the sampler itself: some samples have no hint, the typical one has several
    masks = [sample_local_hints(truth_ab(256), np.random.default_rng(s))[1] for s in range(200)]
    empty = np.mean([m.sum() == 0 for m in masks])
    assert 0.05 < empty < 0.22
    assert np.median([count_patches(m) for m in masks]) >= 3


def test_each_patch_holds_the_truths_mean_ab_and_lies_inside_the_image() -> None:
    ab = truth_ab(128, seed=3)
    hint_ab, mask = place_hints(ab, 1, np.random.default_rng(7))
    ys, xs = np.nonzero(mask[0])
    assert len(ys) > 0
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    assert (y1 - y0) == (x1 - x0)  # square
    assert mask[0, y0:y1, x0:x1].all()
    expected = ab[:, y0:y1, x0:x1].mean(axis=(1, 2))
    np.testing.assert_allclose(
        hint_ab[:, y0:y1, x0:x1], np.broadcast_to(expected[:, None, None], (2, y1 - y0, x1 - x0)), rtol=1e-5
    )
    assert not hint_ab[:, mask[0] == 0].any()  # zeros where there is no hint
    # many hints: always inside, positions gathered about the centre (Gaussian, sd = a quarter of the side)
    _, mask = place_hints(ab, 400, np.random.default_rng(8))
    assert mask.shape == (1, 128, 128)
    ys, xs = np.nonzero(mask[0])
    assert abs(ys.mean() - 64) < 8
    assert abs(xs.mean() - 64) < 8
    assert mask[0, 40:88, 40:88].mean() > mask[0, :20].mean()


def test_global_hint_is_a_distribution_then_a_flag() -> None:
    dist = ab_distribution(truth_ab(32), CENTRES)
    assert dist.shape == (len(CENTRES),)
    assert dist.sum() == pytest.approx(1.0, abs=1e-5)
    hint = global_hint(dist)
    assert hint.shape == (len(CENTRES) + 1,)
    assert hint[-1] == 1.0
    assert hint[:-1].sum() == pytest.approx(1.0, abs=1e-5)
    # pixels all at one colour put all the mass on its nearest bin
    one = np.stack([np.full((8, 8), 21.0), np.full((8, 8), -9.0)]).astype(np.float32)
    assert CENTRES[ab_distribution(one, CENTRES).argmax()].tolist() == [20.0, -10.0]


def test_sampled_global_hints_are_given_or_all_zeros() -> None:
    hints = [sample_global_hint(truth_ab(16, seed=s), CENTRES, np.random.default_rng(s)) for s in range(300)]
    given = [h for h in hints if h[-1] == 1.0]
    dropped = [h for h in hints if h[-1] == 0.0]
    assert len(given) + len(dropped) == len(hints)
    assert 0.25 < len(given) / len(hints) < 0.55  # dropped at random, so the automatic path is trained too
    assert all(not h.any() for h in dropped)  # all zeros means none
    assert all(h[:-1].sum() == pytest.approx(1.0, abs=1e-5) for h in given)
    assert any((h[:-1] > 0).sum() <= 8 for h in given)  # some are palette-like

"""explain.agreement: known rank correlations and top-k overlaps."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from explain.agreement import agreement, rank_correlations, top_overlaps


def test_identical_maps_agree_and_a_negation_disagrees(rng):
    a = rng.random((40, 30))
    res = agreement({"a": a, "same": a.copy(), "neg": -a})
    assert res.names == ["a", "same", "neg"]
    np.testing.assert_allclose(np.diag(res.spearman), 1.0)
    assert res.spearman[0, 1] == pytest.approx(1.0)
    assert res.spearman[0, 2] == pytest.approx(-1.0)
    assert res.overlap[0, 1] == pytest.approx(1.0)
    assert res.overlap[0, 2] == pytest.approx(0.0)           # hottest 10% vs coldest 10%
    np.testing.assert_allclose(res.spearman, res.spearman.T)


def test_spearman_matches_scipy_with_ties(rng):
    maps = np.round(rng.random((4, 500)) * 5)                 # many ties
    rho = rank_correlations(maps)
    for i in range(4):
        for j in range(4):
            assert rho[i, j] == pytest.approx(spearmanr(maps[i], maps[j])[0], abs=1e-9)


def test_constant_maps_follow_explain_metrics():
    flat = np.zeros((3, 10))
    flat[2] = np.arange(10)
    rho = rank_correlations(flat)
    assert rho[0, 1] == 1.0 and rho[0, 2] == 0.0 and rho[2, 2] == pytest.approx(1.0)


def test_known_top_k_overlaps():
    # 100 pixels, top 10%: a = pixels 0..9 hottest, b = 5..14 hottest -> 5 shared of 15: IoU 1/3
    a = np.zeros(100)
    a[:10] = 1 + np.arange(10)[::-1]
    b = np.zeros(100)
    b[5:15] = 1 + np.arange(10)[::-1]
    c = np.zeros(100)
    c[50:60] = 1
    iou = top_overlaps(np.stack([a, b, c]), top=0.1)
    assert iou[0, 1] == pytest.approx(5 / 15)
    assert iou[0, 2] == 0.0 and iou[1, 1] == 1.0
    assert top_overlaps(np.stack([a, b]), top=0.05)[0, 1] == pytest.approx(0.0)   # 0..4 vs 5..9


def test_large_maps_of_different_sizes_are_compared_fast(rng):
    import time

    base = rng.random((12, 16)).astype(np.float32)
    import cv2
    big = cv2.resize(base, (640, 480), interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(base, (64, 48), interpolation=cv2.INTER_LINEAR)
    maps = {f"m{i}": big + 0.01 * i for i in range(11)}
    maps["small"] = small
    start = time.perf_counter()
    res = agreement(maps)
    assert time.perf_counter() - start < 2.0
    assert res.spearman.shape == (12, 12) and res.spearman[0, 11] > 0.95
    with pytest.raises(ValueError):
        agreement(maps, top=0)

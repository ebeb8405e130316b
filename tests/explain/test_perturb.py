"""The perturbation core: batched masked forwards equal one-by-one model calls; progress; cancel."""

import numpy as np
import pytest

from explain.errors import Cancelled
from explain.perturb import OcclusionMasks, run_batches
from explain_testkit import random_image


def test_masked_outputs_equal_direct_calls(gap_explainer, rng):
    x = gap_explainer.prepare(random_image(rng, 32, 32))
    base = np.full_like(x, 0.5)
    masks = rng.random((5, 4, 4)).astype(np.float32)   # low-res masks: upsampled bilinearly
    masks[0] = 1.0
    seen = []
    out = gap_explainer.masked_outputs(x, base, masks, batch_size=2, progress=seen.append)
    assert out.shape == (5, 4) and seen == [0.4, 0.8, 1.0]
    full = np.ones((32, 32), np.float32)
    direct = gap_explainer.masked_outputs(x, base, full[None], batch_size=1)
    np.testing.assert_allclose(out[0], direct[0], rtol=1e-5)
    logits = np.log(gap_explainer.model(x).numpy()[0])   # softmax head: logits up to a constant
    np.testing.assert_allclose(out[0] - out[0].mean(), logits - logits.mean(), rtol=1e-4, atol=1e-5)
    zero = gap_explainer.masked_outputs(x, base, np.zeros((1, 32, 32), np.float32))
    np.testing.assert_allclose(zero[0], gap_explainer.masked_outputs(base, base, full[None])[0], rtol=1e-5)


def test_occlusion_masks_cover_every_pixel():
    m = OcclusionMasks((10, 7), patch=4, stride=3)
    assert m.positions[-1] == (6, 3)                      # flush with the border
    masks = m[0:len(m)]
    assert masks.shape == (len(m), 10, 7)
    assert ((1 - masks).sum(axis=0) > 0).all()
    assert ((1 - masks).sum(axis=(1, 2)) == 16).all()
    combined = m.combine(np.arange(len(m), dtype=np.float32))
    assert combined.shape == (10, 7) and combined[0, 0] == 0


def test_run_batches_cancel_and_progress():
    seen, calls = [], []
    parts = run_batches(7, lambda a, b: (a, b), batch_size=3, progress=seen.append)
    assert parts == [(0, 3), (3, 6), (6, 7)] and seen == [3 / 7, 6 / 7, 1.0]
    with pytest.raises(Cancelled):
        run_batches(7, lambda a, b: calls.append((a, b)), batch_size=3, cancel=lambda: len(calls) == 2)
    assert calls == [(0, 3), (3, 6)]

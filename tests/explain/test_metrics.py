"""Known-answer tests for explain.metrics: localisation games, deletion/insertion, sanity check."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from explain import Explainer  # noqa: E402
from explain.errors import Cancelled, ExplainError  # noqa: E402
from explain.metrics import (StepMasks, deletion_insertion, energy_in_mask, mask_fraction,  # noqa: E402
                             pixel_order, pointing_game, sanity_check, spearman, ssim)

L = keras.layers


def blob_mask(rng, h=48, w=64):
    m = np.zeros((h, w), bool)
    y, x = rng.integers(0, h - 16), rng.integers(0, w - 20)
    m[y:y + rng.integers(6, 16), x:x + rng.integers(6, 20)] = True
    return m


# -- localisation -------------------------------------------------------------------------------

def test_heatmap_equal_to_mask_scores_one(rng):
    for _ in range(10):
        mask = blob_mask(rng)
        assert pointing_game(mask.astype(np.float32), mask) == pytest.approx(1.0)
        assert energy_in_mask(mask.astype(np.float32), mask) == pytest.approx(1.0)


def test_heatmap_outside_mask_scores_zero(rng):
    mask = blob_mask(rng)
    anti = (~mask).astype(np.float32)
    assert pointing_game(anti, mask) == pytest.approx(0.0)
    assert energy_in_mask(anti, mask) == pytest.approx(0.0)


def test_random_heatmaps_score_chance(rng):
    hits, energies, chances = [], [], []
    for _ in range(300):
        mask = blob_mask(rng)
        heat = rng.random(mask.shape)
        hits.append(pointing_game(heat, mask))
        energies.append(energy_in_mask(heat, mask) - mask_fraction(mask))
        chances.append(mask_fraction(mask))
    # energy of a random map is the mask's area share, image by image
    assert np.abs(energies).max() < 0.03
    # the pointing game hits as often as the mask covers the image (binomial, 300 draws)
    assert abs(np.mean(hits) - np.mean(chances)) < 0.06


def test_pointing_game_ties_tolerance_and_sizes():
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    assert pointing_game(np.zeros((20, 20)), mask) == pytest.approx(mask.mean())  # flat: chance
    heat = np.zeros((20, 20))
    heat[12, 7] = 1.0                    # two pixels below the mask
    assert pointing_game(heat, mask) == pytest.approx(0.0)
    assert pointing_game(heat, mask, tolerance=3) == pytest.approx(1.0)
    big = np.kron(heat, np.ones((2, 2)))  # heatmap at twice the mask's size
    assert pointing_game(big, mask) == pytest.approx(0.0)
    assert energy_in_mask(np.kron(mask, np.ones((2, 2))), mask) == pytest.approx(1.0)


def test_energy_ignores_negative_values_and_blank_map_is_nan():
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    heat = np.where(mask, 1.0, -5.0)
    assert energy_in_mask(heat, mask) == pytest.approx(1.0)
    assert np.isnan(energy_in_mask(np.zeros((10, 10)), mask))


# -- similarity --------------------------------------------------------------------------------

def test_spearman_matches_scipy_and_edge_cases(rng):
    a, b = rng.random((12, 9)), rng.random((12, 9))
    b[:3] = a[:3] * 2  # some shared structure
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic)
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(np.ones((4, 4)), np.ones((4, 4))) == pytest.approx(1.0)
    assert spearman(a[:4, :4], np.zeros((4, 4))) == pytest.approx(0.0)


def test_ssim_identical_is_one_unrelated_is_low(rng):
    a = rng.random((32, 32))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 3 * a + 1) == pytest.approx(1.0)     # maps are compared after scaling to 0..1
    assert abs(ssim(a, rng.random((32, 32)))) < 0.15


# -- deletion / insertion -------------------------------------------------------------------------

def test_step_masks_remove_the_most_important_pixels_first(rng):
    heat = rng.random((6, 7))
    dele = StepMasks(heat, steps=6, insertion=False)
    ins = StepMasks(heat, steps=6, insertion=True)
    assert len(dele) == 7
    d, i = dele[0:7], ins[0:7]
    np.testing.assert_array_equal(d + i, 1.0)
    removed = (d == 0).reshape(7, -1).sum(axis=1)
    np.testing.assert_array_equal(removed, np.round(np.linspace(0, 42, 7)))
    order = pixel_order(heat)
    assert heat.ravel()[order[0]] == heat.max()
    assert set(np.flatnonzero(d[2] == 0)) == set(order[:removed[2]])


def region_model(size=32):
    """Sees only the top-left quadrant: class 0's logit = 20 * (mean grey level there - 0.6)."""
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(1, 1, use_bias=False, name="grey")(inp)
    x = L.Cropping2D(((0, size // 2), (0, size // 2)), name="crop")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inp, out)
    model.get_layer("grey").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    model.get_layer("head").set_weights([np.array([[20.0, 0.0]], np.float32),
                                         np.array([-12.0, 0.0], np.float32)])
    return model


@pytest.fixture(scope="module")
def region_explainer():
    return Explainer(region_model(), preprocess=lambda x: x / 255.0)


def test_deleting_the_region_the_model_uses_drops_the_score_fastest(region_explainer, rng):
    image = rng.integers(190, 250, (32, 32, 3), dtype=np.uint8)
    region = np.zeros((32, 32), np.float32)
    region[:16, :16] = 1.0
    maps = {"region": region, "elsewhere": 1 - region, "random": rng.random((32, 32))}
    res = deletion_insertion(region_explainer, image, maps, target=0, steps=8, baseline="black")
    d = {m: r.deletion for m, r in res.items()}
    assert d["region"].auc < d["random"].auc < d["elsewhere"].auc
    # a quarter of the pixels (the whole region) gone: the score has collapsed, not elsewhere
    assert d["region"].scores[2] < 0.01 < 0.99 < d["elsewhere"].scores[2]
    assert d["region"].scores[0] == pytest.approx(d["elsewhere"].scores[0])
    assert d["region"].scores[0] > 0.99
    # insertion from a grey image: revealing the region first raises the score fastest
    ins = deletion_insertion(region_explainer, image, maps, target=0, steps=8, baseline="grey")
    assert ins["region"].insertion.auc > ins["random"].insertion.auc > ins["elsewhere"].insertion.auc
    np.testing.assert_allclose(ins["region"].insertion.fractions, np.linspace(0, 1, 9))


def test_curves_run_at_the_model_size_for_any_image_size(region_explainer, rng):
    image = rng.integers(190, 250, (48, 80, 3), dtype=np.uint8)   # not the model's 32x32
    heat = np.zeros((48, 80), np.float32)
    heat[:24, :40] = 1.0
    res = deletion_insertion(region_explainer, image, {"region": heat}, steps=4, baseline="black")
    assert res["region"].target == 0
    assert res["region"].deletion.scores[1] < 0.01          # first quarter is the region


def test_progress_cancel_and_bad_options(region_explainer, rng):
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    maps = {"a": rng.random((32, 32)), "b": rng.random((32, 32))}
    seen = []
    deletion_insertion(region_explainer, image, maps, steps=10, batch_size=4, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) > 4
    with pytest.raises(Cancelled):
        deletion_insertion(region_explainer, image, maps, cancel=lambda: True)
    with pytest.raises(ExplainError, match="baseline"):
        deletion_insertion(region_explainer, image, maps, baseline="pink")
    with pytest.raises(ExplainError, match="steps"):
        deletion_insertion(region_explainer, image, maps, steps=0)


# -- sanity check ---------------------------------------------------------------------------------

def squares(n, rng, size=32):
    """Noise backgrounds with a red (class 0) or blue (class 1) square somewhere."""
    x = rng.integers(60, 120, (n, size, size, 3)).astype(np.uint8)
    y = rng.integers(0, 2, n)
    for i in range(n):
        s = rng.integers(7, 11)
        r, c = rng.integers(0, size - s, 2)
        x[i, r:r + s, c:c + s] = (220, 40, 40) if y[i] == 0 else (40, 40, 220)
    return x, y


@pytest.fixture(scope="module")
def trained_explainer():
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(h)
    h = L.BatchNormalization(name="bn2")(h)
    h = L.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, L.Dense(2, activation="softmax", name="head")(h))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = squares(1000, np.random.default_rng(0))
    model.fit(x / 255.0, y, epochs=4, batch_size=64, verbose=0)
    xt, yt = squares(100, np.random.default_rng(1))
    assert model.evaluate(xt / 255.0, yt, verbose=0)[1] > 0.95
    return Explainer(model, preprocess=lambda a: a / 255.0)


def edges(explainer, image, target):
    """An "explanation" that never looks at the model: the image's gradient magnitude."""
    gy, gx = np.gradient(image.astype(np.float64).mean(axis=-1))
    return np.hypot(gx, gy)


def intensity(explainer, image, target):
    return image.astype(np.float64).mean(axis=-1)


def test_sanity_check_flags_model_independent_maps_and_passes_gradcam(trained_explainer):
    images, _ = squares(3, np.random.default_rng(5))
    model = trained_explainer.model
    before = [w.copy() for w in model.get_weights()]
    for image in images:
        res = sanity_check(trained_explainer, image, ["gradcam"],
                           custom={"edges": edges, "intensity": intensity})
        assert res["edges"].passed is False and res["intensity"].passed is False
        assert res["edges"].spearman == pytest.approx([1.0] * 3) and res["edges"].score == pytest.approx(1.0)
        assert res["intensity"].ssim == pytest.approx([1.0] * 3)
        assert res["gradcam"].passed is True, res["gradcam"].spearman
        assert res["gradcam"].score < 0.3 and res["gradcam"].score == pytest.approx(
            np.mean(res["gradcam"].spearman))
        assert "Fails" in res["edges"].message and "Passes" in res["gradcam"].message
    # cascade top down: head, then conv c2 with its batch norm, then c1
    assert res["gradcam"].steps == ["head", "c2 + bn2", "c1"]
    # the shared model is never modified
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the explainer still explains the trained model afterwards
    assert trained_explainer.predict(images[0], top=1)[0].probability > 0.9


def test_randomising_the_head_leaves_class_agnostic_maps_unchanged(trained_explainer):
    image = squares(1, np.random.default_rng(7))[0][0]
    res = sanity_check(trained_explainer, image, ["eigencam", "gradcam"])
    assert res["eigencam"].steps[0] == "head"
    assert res["eigencam"].spearman[0] == pytest.approx(1.0)   # the head is not in its map
    assert res["eigencam"].ssim[0] == pytest.approx(1.0)
    assert res["gradcam"].spearman[0] < 0.5                     # Grad-CAM's weights come from it


def test_sanity_check_merges_steps_and_reports_progress(trained_explainer):
    image = squares(1, np.random.default_rng(9))[0][0]
    seen = []
    res = sanity_check(trained_explainer, image, ["gradcam", "gradients"], max_steps=2,
                       progress=seen.append)
    assert len(res["gradients"].steps) == len(res["gradients"].spearman) == 2
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    assert res["gradcam"].original.shape == res["gradcam"].randomised.shape == (32, 32)
    again = sanity_check(trained_explainer, image, ["gradcam", "gradients"], max_steps=2)
    assert again["gradients"].spearman == pytest.approx(res["gradients"].spearman)   # seeded
    with pytest.raises(Cancelled):
        sanity_check(trained_explainer, image, ["gradcam"], cancel=lambda: True)
    with pytest.raises(ExplainError):
        sanity_check(trained_explainer, image, [])


# -- boxes and the random baseline ------------------------------------------------------------------

def test_box_mask_clips_orders_and_validates():
    from explain.metrics import box_mask

    m = box_mask([(20, 10, 50, 30)], (40, 60))
    assert m.sum() == 30 * 20 and m[10, 20] and m[29, 49] and not m[30, 50] and not m[9, 20]
    # corners in any order, two boxes (overlapping), one partly outside the image
    two = box_mask([[50, 30, 20, 10], (40, 0, 100, 5)], (40, 60))
    assert two.sum() == 30 * 20 + 20 * 5 - 0 and two[0, 59] and two[4, 45]
    # a pixel is in when its centre is: 0.4..2.6 covers pixels 0, 1, 2 (centres .5, 1.5, 2.5)
    assert box_mask([(0.4, 0.4, 2.6, 1.4)], (5, 5)).sum() == 3
    # the mask feeds the localisation games like a scene's mask
    heat = np.zeros((40, 60), np.float32)
    heat[15, 30] = 1.0
    assert pointing_game(heat, m) == 1.0 and energy_in_mask(heat, m) == 1.0
    assert pointing_game(heat, box_mask([(0, 0, 10, 10)], (40, 60))) == 0.0
    for bad in ([(0, 0, float("nan"), 3)], [("a", 0, 1, 1)], [(1, 2, 3)], [(0, 0, 5, 5)] * 21):
        with pytest.raises(ExplainError):
            box_mask(bad, (40, 60))
    with pytest.raises(ExplainError, match="cover no pixel"):
        box_mask([(100, 100, 200, 200)], (40, 60))
    with pytest.raises(ExplainError, match="cover no pixel"):
        box_mask([], (40, 60))


def test_random_maps_are_seeded_and_smooth():
    from explain.metrics import random_maps

    a, b = random_maps((32, 48), 2), random_maps((32, 48), 2)
    assert len(a) == 2 and a[0].shape == (32, 48)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], a[1])
    assert np.abs(np.diff(a[0], axis=1)).max() < 0.2       # blobs, not per-pixel noise


def test_faithfulness_against_random_maps(region_explainer, rng):
    from explain.metrics import faithfulness
    from explain.verdict import verdict

    image = rng.integers(190, 250, (32, 32, 3), dtype=np.uint8)
    region = np.zeros((32, 32), np.float32)
    region[:16, :16] = 1.0
    faith, rand = faithfulness(region_explainer, image, {"region": region, "elsewhere": 1 - region},
                               target=0, steps=8, baseline="grey")
    assert set(faith) == {"region", "elsewhere"} and rand.n == 3
    assert faith["region"].deletion.auc < rand.deletion_auc < faith["elsewhere"].deletion.auc
    assert len(rand.deletion) == 9 and rand.deletion[0] == pytest.approx(faith["region"].deletion.scores[0])
    good = verdict(faith["region"].deletion.auc, faith["region"].insertion.auc, rand.deletion_auc,
                   rand.insertion_auc, True, rand.spread)
    bad = verdict(faith["elsewhere"].deletion.auc, faith["elsewhere"].insertion.auc, rand.deletion_auc,
                  rand.insertion_auc, True, rand.spread)
    assert good.level == "trust" and bad.faithful == "worse"
    again = faithfulness(region_explainer, image, {"region": region}, target=0, steps=8)[1]
    assert again.deletion_auc == pytest.approx(rand.deletion_auc)    # fixed seed
    assert faithfulness(region_explainer, image, {"region": region}, target=0, steps=8, n_random=0)[1] is None


def test_clip_boxes_keeps_what_lies_on_the_image():
    from explain.metrics import clip_boxes

    assert clip_boxes([(-5, 50, 30, 10), (70, 0, 90, 5)], (40, 60)) == [(0.0, 10.0, 30.0, 40.0)]
    assert clip_boxes([], (40, 60)) == []


def test_sanity_check_reuses_the_trained_maps_it_is_given(trained_explainer):
    """The app's grid has the trained model's maps: the cascade skips its first run, same numbers."""
    image = squares(1, np.random.default_rng(9))[0][0]
    plain = sanity_check(trained_explainer, image, ["gradcam", "gradients"], max_steps=2)
    maps = {m: r.heatmap for m, r in trained_explainer.explain(image, ["gradcam", "gradients"]).items()}
    calls = []
    original = type(trained_explainer).explain

    def counting(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)
    type(trained_explainer).explain = counting
    try:
        shared = sanity_check(trained_explainer, image, ["gradcam", "gradients"], max_steps=2, trained=maps)
    finally:
        type(trained_explainer).explain = original
    assert len(calls) == 2                        # the two randomisation steps, not the trained model
    for m in ("gradcam", "gradients"):
        assert shared[m].spearman == pytest.approx(plain[m].spearman, abs=1e-6)
    # merged steps (head + c2 + bn2, then c1): each named by the deepest layer it reaches
    assert plain["gradcam"].reached == ["c2", "c1"]

"""The scene generator: deterministic, masks equal to what was drawn, options honoured."""
import numpy as np
import pytest

from models.scenes import BACKGROUNDS, CLASSES, CONFOUND, make_scene
from models.train import render


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = make_scene(7, 96), make_scene(7, 96), make_scene(8, 96)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert (a.label, a.background, a.boxes) == (b.label, b.background, b.boxes)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(40))
def test_mask_is_exactly_what_was_drawn(seed):
    """Pixels that differ from the vehicle-free backdrop are all in the mask, and mask pixels
    do differ from the backdrop."""
    s = make_scene(seed, 128, occlusion=0.7)
    assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (128, 128) and s.mask.dtype == bool
    drawn = np.any(s.image != s.backdrop, axis=-1)
    assert not (drawn & ~s.mask).any(), "something was drawn outside the vehicle mask"
    assert s.mask.sum() > 30
    assert (drawn & s.mask).sum() >= 0.97 * s.mask.sum(), "mask claims pixels nobody drew"
    inside = np.zeros_like(s.mask)
    for x0, y0, x1, y1 in s.boxes:
        inside[max(y0, 0):y1, max(x0, 0):x1] = True
    assert not (s.mask & ~inside).any(), "mask pixels outside every vehicle box"


def test_occluders_hide_part_of_the_vehicle_and_the_mask_follows():
    """The same seed with and without occlusion: the occluded scene's mask is a strict subset."""
    hidden = 0
    for seed in range(30):
        clear = make_scene(seed, 96, occlusion=0.0)
        occl = make_scene(seed, 96, occlusion=1.0)
        assert np.array_equal(clear.backdrop.shape, occl.backdrop.shape)
        if occl.mask.sum() < clear.mask.sum():
            hidden += 1
            assert occl.mask.sum() >= 0.5 * clear.mask.sum()  # still mostly visible
    assert hidden >= 15


def test_options_label_count_background_and_confound():
    for i, name in enumerate(CLASSES):
        s = make_scene(i, 64, label=name, vehicles=3, background="snow")
        assert (s.label, s.class_name, s.n_vehicles, s.background) == (i, name, 3, "snow")
        c = make_scene(100 + i, 64, label=i, confounded=True)
        assert c.background == CONFOUND[name] and c.confounded
        d = make_scene(200 + i, 64, label=i, confounded=False)
        assert d.background != CONFOUND[name] and not d.confounded
    assert sorted(CONFOUND.values()) == sorted(BACKGROUNDS)
    with pytest.raises(ValueError):
        make_scene(0, 64, background="moon")
    with pytest.raises(ValueError):
        make_scene(0, 64, vehicles=4)


def test_classes_balanced_and_sizes_rectangular():
    x, y = render(range(300), (48, 48), render_sizes=(48, 64))
    assert x.shape == (300, 48, 48, 3) and x.dtype == np.uint8 and y.shape == (300,)
    counts = np.bincount(y, minlength=len(CLASSES))
    assert counts.min() > 40, counts
    s = make_scene(3, (60, 100))
    assert s.image.shape == (60, 100, 3) and s.mask.shape == (60, 100)

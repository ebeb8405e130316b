"""explain.verdict on constructed numbers: who gets the trusting sentence, and who never does."""
import pytest

from explain.verdict import LEVELS, faithfulness_level, margin, plain_warning, verdict

RANDOM = (0.40, 0.40)   # random maps' deletion and insertion AUC


def test_margin_is_the_mean_gain_over_random():
    assert margin(0.10, 0.70, *RANDOM) == pytest.approx(0.30)
    assert margin(0.40, 0.40, *RANDOM) == pytest.approx(0.0)
    assert margin(0.60, 0.30, *RANDOM) == pytest.approx(-0.15)


def test_better_than_random_and_passing_sanity_is_trusted():
    v = verdict(0.10, 0.70, *RANDOM, sanity=True)
    assert v.level == "trust" and v.faithful == "much"
    assert v.sentence.startswith("Trustworthy here: removing what it points at drops the score much "
                                 "faster than random")
    assert "better than random by 0.30" in v.sentence
    assert "changes when the model's weights are randomised" in v.sentence


def test_failing_sanity_is_never_trusted_however_faithful():
    for numbers in [(0.0, 1.0), (0.10, 0.70), (0.40, 0.40), (0.9, 0.1)]:
        v = verdict(*numbers, *RANDOM, sanity=False)
        assert v.level == "distrust" and "Trustworthy" not in v.sentence
        assert "barely changes" in v.sentence
    assert ", but it barely changes" in verdict(0.10, 0.70, *RANDOM, sanity=False).sentence


def test_no_better_than_random_is_said_and_not_trusted():
    v = verdict(0.41, 0.41, *RANDOM, sanity=True)
    assert v.faithful == "none" and v.level == "doubt"
    assert "no better than random" in v.sentence and "Trustworthy" not in v.sentence
    assert verdict(0.60, 0.20, *RANDOM, sanity=True).faithful == "worse"


def test_the_random_maps_spread_widens_the_no_better_band():
    # a gain of 0.05 beats random with a tight baseline, not with a noisy one
    assert faithfulness_level(0.05, spread=0.0) == "better"
    assert faithfulness_level(0.05, spread=0.03) == "none"
    assert faithfulness_level(0.11, spread=0.0) == "much"
    assert faithfulness_level(0.11, spread=0.06) == "none"
    assert faithfulness_level(None) == "unknown"
    assert faithfulness_level(float("nan")) == "unknown"


def test_sanity_not_run_blank_or_missing_numbers():
    off = verdict(0.10, 0.70, *RANDOM)
    assert off.level == "faithful" and "sanity check was not run" in off.sentence
    assert verdict(0.10, 0.70, *RANDOM, sanity=None).level == "distrust"
    unknown = verdict(None, 0.7, *RANDOM, sanity=True)
    assert unknown.level == "unknown" and unknown.margin is None
    assert all(v.headline in LEVELS.values() for v in (off, unknown))


def test_warnings_in_plain_words():
    ig = ("the map accounts for only 74% of the score's change from the blank image (completeness); "
          "more path steps (ig_steps) make it exact")
    text = plain_warning(ig)
    assert "ig_steps" not in text and "“Integrated gradients: path steps” under Method options" in text
    lime = "LIME's linear surrogate misses the model's score (12% of the range; R² 0.74): read with care"
    assert "R²" not in plain_warning(lime) and "fit quality 74%" in plain_warning(lime)
    assert plain_warning("nothing to translate") == "nothing to translate"

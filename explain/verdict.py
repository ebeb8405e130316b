"""Which map to trust on this image, in one plain sentence per method.

Two tests, combined (pure Python; the numbers come from explain.metrics):
- faithfulness: the method's deletion and insertion AUC against the same curves for a few random
  maps on the same image (`metrics.random_baseline`). Its margin is the mean of the deletion gain
  (random's deletion AUC minus the method's) and the insertion gain (the method's insertion AUC
  minus random's), in the AUCs' own units (a share of the score's 0..1 range). Within `tolerance`
  of random (at least twice the random maps' own spread) is "no better than random".
- the sanity check (Adebayo et al. 2018): does the map change when the weights are randomised.

A map is called trustworthy only when it beats random *and* passes the sanity check; a map that
fails the sanity check never is, however well it scores on deletion (vanilla gradients often do:
the curves reward maps that follow edges, which the sanity check exposes as image, not model).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

#: Margins (mean AUC gain over random) from which a map is "much" better than random.
STRONG_MARGIN = 0.10
#: The smallest margin that counts as better than random, whatever the random maps' spread.
MIN_MARGIN = 0.02

#: The verdict levels, best first, with the word the table shows.
LEVELS = {"trust": "Trustworthy here", "faithful": "Faithful, sanity unchecked",
          "doubt": "Doubtful here", "distrust": "Do not trust here", "unknown": "Cannot tell"}


@dataclass(frozen=True)
class Verdict:
    level: str              # a key of LEVELS
    headline: str           # LEVELS[level]
    sentence: str           # the whole plain sentence, headline first
    margin: float | None    # mean AUC gain over random (None when unknown)
    faithful: str           # "much", "better", "none", "worse" or "unknown"


def margin(deletion_auc: float, insertion_auc: float, random_deletion: float,
           random_insertion: float) -> float:
    """Mean AUC gain over the random maps: positive = better than random."""
    return ((random_deletion - deletion_auc) + (insertion_auc - random_insertion)) / 2


def faithfulness_level(gain: float | None, spread: float = 0.0) -> str:
    """much / better / none / worse, judged against the random maps' spread."""
    if gain is None or not math.isfinite(gain):
        return "unknown"
    tol = max(MIN_MARGIN, 2 * (spread if math.isfinite(spread) else 0.0))
    if gain >= max(STRONG_MARGIN, tol):
        return "much"
    if gain > tol:
        return "better"
    if gain < -tol:
        return "worse"
    return "none"


_FAITH_TEXT = {
    "much": "removing what it points at drops the score much faster than random, and revealing it "
            "brings the score back faster",
    "better": "removing what it points at drops the score a little faster than random",
    "none": "it is no better than random: removing what it points at drops the score about as fast "
            "as removing random pixels",
    "worse": "it is worse than random: removing what it points at hurts the score less than "
             "removing random pixels",
    "unknown": "its deletion and insertion scores could not be compared with random",
}
_SANITY_TEXT = {
    True: "it changes when the model's weights are randomised, so it shows what the model learnt",
    False: "it barely changes when the model's weights are randomised, so it shows the image more "
           "than the model",
    None: "its map is blank, so the sanity check has nothing to compare",
    "off": "the sanity check was not run",
}


def verdict(deletion_auc: float | None, insertion_auc: float | None,
            random_deletion: float | None, random_insertion: float | None,
            sanity: bool | None | str = "off", spread: float = 0.0) -> Verdict:
    """One method's verdict. sanity: True (passes), False (fails), None (blank map) or "off"
    (not run). spread: the random maps' standard deviation of the margin."""
    numbers = (deletion_auc, insertion_auc, random_deletion, random_insertion)
    gain = None
    if all(v is not None and math.isfinite(v) for v in numbers):
        gain = margin(*numbers)
    faith = faithfulness_level(gain, spread)
    good = faith in ("much", "better")
    if sanity is False:
        level = "distrust"
    elif sanity is True:
        level = "trust" if good else ("unknown" if faith == "unknown" else "doubt")
    elif sanity is None:
        level = "distrust" if faith != "unknown" else "unknown"
    else:
        level = "faithful" if good else ("unknown" if faith == "unknown" else "doubt")
    faith_text = _FAITH_TEXT[faith]
    if gain is not None and faith in ("much", "better"):
        faith_text += f" (better than random by {gain:.2f} on a 0–1 scale)"
    joiner = ", and " if (good == (sanity is True)) else ", but "
    sentence = f"{LEVELS[level]}: {faith_text}{joiner}{_SANITY_TEXT[sanity]}."
    return Verdict(level, LEVELS[level], sentence, gain, faith)


# -- warnings in plain words ------------------------------------------------------------------------

_R2 = re.compile(r"R² ([0-9.]+)")


def plain_warning(text: str, options: Mapping[str, object] | None = None) -> str:
    """An engine warning for a non-expert: option ids become their descriptions ("more path steps
    (the option “Integrated gradients: path steps” under Method options)"), R² is said in words."""
    if options is None:
        from explain.methods import OPTIONS as options

    def option(match: re.Match) -> str:
        desc = getattr(options[match.group(0)], "description", match.group(0)).rstrip(".")
        desc = desc.split(" (")[0]
        return f"the option “{desc}” under Method options"
    names = sorted(options, key=len, reverse=True)
    if names:
        text = re.sub(r"\b(" + "|".join(map(re.escape, names)) + r")\b", option, text)
    return _R2.sub(lambda m: f"fit quality {float(m.group(1)):.0%} (100% = the simple model "
                             "matches the real one exactly)", text)

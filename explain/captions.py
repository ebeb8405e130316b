"""What a map shows, in words a manager reads: one caption rule for the app's figures, the HTML
report and the CLI's report, read from the method's declaration (explain.spec.Method).

    describe(METHODS["gradcam"], "sports car")
    -> "red: the parts of the photo that raised the model's score for sports car"

A screenshot of a map must not read as evidence it is not, so the caption says which way the
map points (for the class, against it with *counterfactual*, "A rather than B" with a contrast),
which number it explains (the score, or the probability) and, for a map drawn signed, what red
and blue each mean. Plain text: callers escape it for HTML.
"""

from __future__ import annotations

from explain.spec import Method

#: The colour that means "a lot" at the top of each colormap (explain.render.COLORMAPS), so a
#: caption names the colour the reader sees.
HOT = {"jet": "red", "turbo": "red", "viridis": "yellow", "inferno": "yellow", "magma": "light yellow",
       "plasma": "yellow", "cividis": "yellow"}


#: Why the maps of a scale group (Method.scale_group) can share one colour scale: their unit.
SCALE_WHY = {"cam": "all weigh the layer's activations by the score's gradients",
             "pixel": "all are the score's change per input pixel",
             "perturbation": "all measure how much the score changes when parts of the photo are hidden"}


def hot(colormap: str) -> str:
    return HOT.get(colormap, "red")


def describe(method: Method, label: str | None, *, mode: str = "relu", contrast: str | None = None,
             counterfactual: bool = False, probability: bool = False, signed: bool = False,
             colormap: str = "jet") -> str:
    """The caption of `method`'s map explaining `label` (None: no class known).

    mode: how the map was normalised (explain.formulas.normalize: "relu" positive evidence, "abs"
    non-negative, "magnitude" a signed map shown by its size, "minmax" no natural zero).
    counterfactual / contrast apply only to methods whose declaration honours them; `signed`: the
    map is drawn from -1 (blue) to 1 (red)."""
    colour = "red" if signed else hot(colormap)
    if not method.needs_target or label is None:
        return (f"{colour}: where the chosen layer responds most strongly, whatever the class; "
                "not an explanation of one answer")
    number = "probability" if probability else "score"
    if contrast and method.needs_target:
        if signed:
            return (f"red: the parts of the photo that favour {label} rather than {contrast}; "
                    f"blue: the parts that favour {contrast}")
        return f"{colour}: the parts of the photo that made the model prefer {label} rather than {contrast}"
    if counterfactual and method.counterfactual:
        return (f"{colour}: the parts of the photo that speak against {label} "
                f"(they lowered the model's {number} for it)")
    if signed:
        return (f"red: the parts of the photo that raised the model's {number} for {label}; "
                "blue: the parts that lowered it")
    if mode == "magnitude":
        return (f"{colour}: the parts of the photo that moved the model's {number} for {label} most, "
                "up or down")
    if mode == "abs":
        return f"{colour}: the pixels the model's {number} for {label} depends on most"
    if mode == "minmax":
        return f"{colour}: where the layer's main pattern for {label} is strongest (relative, not for or against)"
    return f"{colour}: the parts of the photo that raised the model's {number} for {label}"


def legend(signed: bool = False) -> tuple[str, str]:
    """The two ends of the colour bar, in words."""
    if signed:
        return ("against", "for")
    return ("less", "more")

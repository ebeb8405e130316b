"""CNN Fixations: the discriminative neurons backtracked from the class node to the image through
activations x weights (explain.fixations), the image points blurred into a density map."""

from __future__ import annotations

from explain import fixations as FX
from explain.spec import Method, Option


def _cnn_fixations(run, layer):
    run.clean_score()   # resolves run.target
    points, counts = FX.backtrack(run.ex.graph, run.x, run.target, int(run.opts["fixations_budget"]))
    h, w = run.x.shape[1:3]
    sigma = float(run.opts["fixations_sigma"]) * min(h, w)
    warnings = []
    if run.score.contrast is not None:
        warnings.append("CNN Fixations backtracks the target class only; the contrast class is ignored")
    if not len(points):
        warnings.append("no fixation reached the image (no neuron had a positive contribution)")
    return FX.density(points, (h, w), sigma), "abs", {"warnings": warnings, "fixations": int(len(points))}


METHODS = (
    Method("cnn-fixations", "CNN Fixations",
           "Follows the neurons that pushed the class up back to the pixels they look at.",
           "Mopuri, Garg & Babu 2019, CNN Fixations: An Unraveling Approach to Visualize the "
           "Discriminative Image Regions (IEEE TIP)",
           "from the class node, keep inputs with a_i w_ij > 0 layer by layer (conv: per positive "
           "channel the max-contribution position); map = Gaussian-blurred image points",
           "pixel", compute=_cnn_fixations, passes=("forward",),
           options=(Option("fixations_budget", 2000, "CNN Fixations: most neurons tracked per layer "
                           "(the largest contributions).", lo=1, page_max=20000),
                    Option("fixations_sigma", 0.03, "CNN Fixations: Gaussian blur of the fixations, "
                           "as a fraction of the image's shorter side.", kind=float, lo=0,
                           page_max=0.5))),
)

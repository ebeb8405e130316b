"""Perturbation maps: hide parts of the photo (a sliding patch, or the regions one channel of the
layer responds to) and measure how the score changes, batched through explain.perturb."""

from __future__ import annotations

import numpy as np

from explain import formulas as F
from explain.errors import ExplainError
from explain.perturb import OcclusionMasks
from explain.spec import Method, Option

FILLS = ("grey", "black", "mean", "blur")


def occlusion_geometry(size, opts) -> tuple[int, int]:
    patch = opts["occlusion_patch"] or max(1, round(min(size) / 7))
    stride = opts["occlusion_stride"] or max(1, int(patch) // 2)
    if int(patch) < 1 or int(stride) < 1 or int(patch) > min(size):
        raise ExplainError(f"occlusion patch must be 1..{min(size)} and stride >= 1")
    return int(patch), int(stride)


def _occlusion(run, layer):
    patch, stride = occlusion_geometry(run.ex.input_size, run.opts)
    masks = OcclusionMasks(run.ex.input_size, patch, stride)
    fill = run.opts["occlusion_fill"]
    s0 = run.clean_score()
    drops = s0 - run.masked_scores(run.fill_input(fill, patch / 2), masks)
    return masks.combine(drops), "relu", {"patch": patch, "stride": stride, "fill": fill}


def _occlusion_units(ex, opts, layer):
    patch, stride = occlusion_geometry(ex.input_size, opts)
    return len(OcclusionMasks(ex.input_size, patch, stride))


def _top_k(ex, opts, layer, name):
    K = int(ex.graph.layers[layer].shape[-1])
    return K if not opts[name] else min(K, int(opts[name]))


def _scorecam(run, layer):
    A = run.acts(layer)
    k = int(run.opts["scorecam_top_k"]) or A.shape[-1]
    order = np.argsort(-A.mean(axis=(0, 1)))[:k]
    lo, hi = A.min(axis=(0, 1)), A.max(axis=(0, 1))
    order = np.array([c for c in order if hi[c] - lo[c] > 1e-12 * max(1.0, abs(hi[c]))], int)
    planned = min(k, A.shape[-1])
    if len(order) == 0:
        run.advance(planned)
        return np.zeros(A.shape[:2], np.float32), "relu", {"channels": []}
    masks = np.moveaxis((A[..., order] - lo[order]) / (hi[order] - lo[order]), -1, 0)
    out = run.masked_outputs(np.zeros_like(run.x), masks.astype(np.float32), units=planned)
    return F.scorecam(A[..., order], run.scores(out)), "relu", {"channels": [int(c) for c in order]}


def _ablationcam(run, layer):
    """Ablation-CAM (Desai & Ramaswamy 2020, eq. 3): w_k = (y_c - y_c^k) / y_c, y_c^k the score
    with channel k of the layer's activations set to zero, the model resumed from the layer
    (explain.passes ``ablate``: the layers below it run once); map = relu(sum_k w_k A_k).

    As in the paper, and unlike pytorch-grad-cam's AblationCAM, an ablated channel is always set
    to zero (pytorch-grad-cam sets it to min(A) - 1e7 when the layer has values below zero), and
    the weights of all the kept channels enter the sum. Like pytorch-grad-cam (and Score-CAM
    here), only the `ablationcam_top_k` channels with the largest mean activation are ablated;
    the others get weight 0. The score is the run's score (logit by default; contrast: S_t - S_b).
    """
    A = run.acts(layer)
    y = run.clean_score()
    K = A.shape[-1]
    k = int(run.opts["ablationcam_top_k"]) or K
    order = np.argsort(-A.mean(axis=(0, 1)), kind="stable")[:k]
    planned = min(k, K)
    out = run.passes.resumed_outputs(run.x, layer, A, order, batch_size=run.opts["batch_size"],
                                     progress=run.sub_progress(planned), cancel=run._cancel)
    drops = y - run.scores(out)
    warnings = []
    if abs(y) < 1e-6:
        weights = np.zeros(len(order), np.float32)
        warnings.append("the score is zero, so Ablation-CAM's weights (y - y_k) / y are undefined: "
                        "the map is empty")
    else:
        weights = (drops / y).astype(np.float32)
        if y < 0:
            warnings.append("the score is negative, so dividing by it flips Ablation-CAM's weights "
                            "(the paper assumes a positive class score)")
    raw = F.weighted_sum(A[..., order], weights) if len(order) else np.zeros(A.shape[:2], np.float32)
    extra = {"channels": [int(c) for c in order], "weights": [float(w) for w in weights],
             "warnings": warnings}
    return raw, "relu", extra


METHODS = (
    Method("occlusion", "Occlusion", "How much the score drops when each part of the photo is hidden.",
           "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks",
           "map = mean over patches covering a pixel of (S(x) - S(x with the patch hidden))",
           "perturbation", compute=_occlusion, passes=("forward",), traces=("blend",),
           units=_occlusion_units,
           options=(Option("occlusion_patch", None, "Occlusion: patch side in model-input pixels "
                           "(default: side/7).", lo=1, page_max=512),
                    Option("occlusion_stride", None, "Occlusion: stride in model-input pixels "
                           "(default: patch/2).", lo=1, page_max=512),
                    Option("occlusion_fill", "grey", "Occlusion: what hides the patch: grey, black, "
                           "mean, blur.", kind=str, choices=FILLS)),
           scale_group="perturbation", slow=True),
    Method("scorecam", "Score-CAM",
           "Each feature map is used as a mask; maps that keep the score high count most.",
           "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional "
           "Neural Networks", "w = softmax_k S(x * upsampled normalised A_k); map = relu(sum_k w_k A_k)",
           "perturbation", compute=_scorecam, passes=("acts",), traces=("blend",),
           units=lambda ex, o, layer: _top_k(ex, o, layer, "scorecam_top_k"),
           options=(Option("scorecam_top_k", 64, "Score-CAM: keep only the k channels with the "
                           "largest mean activation (0 = all).", page_max=2048),),
           needs_layer=True, scale_group="perturbation", slow=True),
    Method("ablationcam", "Ablation-CAM",
           "Each feature map is switched off in turn; maps whose loss lowers the score most count most.",
           "Desai & Ramaswamy 2020, Ablation-CAM: Visual Explanations for Deep Convolutional Network "
           "via Gradient-free Localization",
           "w_k = (S - S with A_k set to 0) / S; map = relu(sum_k w_k A_k)",
           "perturbation", compute=_ablationcam, passes=("acts",), traces=("ablate",),
           units=lambda ex, o, layer: _top_k(ex, o, layer, "ablationcam_top_k"),
           options=(Option("ablationcam_top_k", 64, "Ablation-CAM: ablate only the k channels with "
                           "the largest mean activation (0 = all).", page_max=2048),),
           needs_layer=True, slow=True),
)

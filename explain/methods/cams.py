"""The CAM family: a map of the chosen layer's activations A (h, w, K), weighted per channel or
per position. The gradient CAMs share one forward + backward pass to the layer (A and the score's
gradients G); each is one formula of explain.formulas."""

from __future__ import annotations

import numpy as np

from explain import formulas as F
from explain.spec import Method, Option


def signed_gradients(run, layer):
    """(A, G) at `layer`, G negated for the counterfactual (evidence against the target)."""
    A, G = run.cam_pass(layer)
    return A, (-G if run.score.counterfactual else G)


def gradient_cam(id, name, plain, paper, formula, fn, **flags) -> Method:
    """A CAM computed from A and G by `fn`: declaring one is its formula plus these words."""
    return Method(id, name, plain, paper, formula, "cam",
                  compute=lambda run, layer: (fn(*signed_gradients(run, layer)), "relu", {}),
                  passes=("cam",), needs_layer=True, counterfactual=True, scale_group="cam", fuses=True,
                  **flags)


def _cam(run, layer):
    A = run.acts(layer)
    w = run.cam_weights[layer].numpy()[:, run.target]
    if run.score.contrast is not None:
        w = w - run.cam_weights[layer].numpy()[:, run.score.contrast]
    return F.cam(A, -w if run.score.counterfactual else w), "relu", {}


def _activations(run, layer):
    A = run.acts(layer)
    k = max(1, int(run.opts["activations_top_k"]))
    order = np.argsort(-A.mean(axis=(0, 1)))[:k]
    extra = {"maps": np.ascontiguousarray(np.moveaxis(A[..., order], -1, 0), np.float32),
             "channels": [int(i) for i in order]}
    return A.mean(axis=-1).astype(np.float32), "minmax", extra


def _eigencam(run, layer):
    return F.eigencam(run.acts(layer)), "minmax", {}


def _eigengradcam(run, layer):
    A, G = signed_gradients(run, layer)
    return F.eigencam(A * G), "relu", {}


METHODS = (
    gradient_cam("gradcam", "Grad-CAM",
                 "Which regions of the layer's features raised the score (gradient-weighted).",
                 "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via "
                 "Gradient-based Localization", "w_k = mean_ij G_kij; map = relu(sum_k w_k A_k)",
                 F.gradcam),
    gradient_cam("gradcam++", "Grad-CAM++",
                 "Like Grad-CAM, but weighs each position, so several objects of a class show up.",
                 "Chattopadhyay et al. 2018, Grad-CAM++: Improved Visual Explanations for Deep "
                 "Convolutional Networks", "alpha = G^2 / (2G^2 + sum A G^3); w_k = sum alpha relu(G)",
                 F.gradcam_pp),
    gradient_cam("xgradcam", "XGrad-CAM", "Grad-CAM with weights normalised by the activations.",
                 "Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and "
                 "Explanation of CNNs", "w_k = sum_ij A_kij G_kij / sum_ij A_kij", F.xgradcam),
    gradient_cam("layercam", "Layer-CAM",
                 "Activations times positive gradients, position by position: finer detail.",
                 "Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for "
                 "Localization", "map = relu(sum_k relu(G_k) A_k)", F.layercam),
    gradient_cam("hirescam", "HiResCAM",
                 "Activations times gradients without averaging: faithful to each position.",
                 "Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations "
                 "of convolutional neural networks", "map = relu(sum_k G_k A_k)", F.hirescam),
    gradient_cam("gradcam-guided", "Grad-CAM (guided gradients)",
                 "Grad-CAM averaging only gradients where activation and gradient are positive.",
                 "Selvaraju et al. 2017 (the authors' code's guided-gradient weights)",
                 "w_k = mean_ij G_kij [G_kij > 0][A_kij > 0]", F.gradcam_guided),
    Method("eigengradcam", "Eigen-Grad-CAM",
           "The main pattern of activations times gradients: class-specific, less noisy.",
           "Eigen-Grad-CAM (pytorch-grad-cam); Muhammad & Yeasin 2020's Eigen-CAM on A * G",
           "map = first principal component of (A * G)", "cam", compute=_eigengradcam, passes=("cam",),
           needs_layer=True, counterfactual=True, fuses=True),
    Method("cam", "CAM", "The model's own class weights on the last feature maps (needs a GAP head).",
           "Zhou et al. 2016, Learning Deep Features for Discriminative Localization",
           "map = relu(sum_k W_kc A_k), W the Dense weights after global average pooling", "cam",
           compute=_cam, passes=("acts",), needs_layer=True, counterfactual=True, scale_group="cam",
           layer_of=lambda ex, layer: ex.cam_layer(layer)),
    Method("eigencam", "Eigen-CAM",
           "The strongest pattern in the layer's features; the same for every class.",
           "Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components",
           "map = A projected on its first principal component", "cam", compute=_eigencam,
           passes=("acts",), needs_layer=True, needs_target=False, fuses=True),
    Method("activations", "Activations", "What the chosen layer responds to, for any class.",
           "the layer's feature maps (mean, and the strongest channels)", "map = mean_k A_k", "cam",
           compute=_activations, passes=("acts",), needs_layer=True, needs_target=False,
           options=(Option("activations_top_k", 16, "Activations: how many channel maps to return.",
                           lo=1, page_max=64),)),
)

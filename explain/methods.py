"""The method catalogue (stable ids used by the CLI, URL state and the app) and their options."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    id: str
    name: str
    description: str
    family: str          # "pixel" | "cam" | "perturbation"
    needs_layer: bool
    slow: bool


def _m(id, name, description, family, needs_layer, slow=False):
    return id, MethodInfo(id, name, description, family, needs_layer, slow)


METHODS: dict[str, MethodInfo] = dict([
    _m("activations", "Activations", "The chosen layer's feature maps (strongest channels); no target.",
       "cam", True),
    _m("gradients", "Vanilla gradients", "Gradient of the score w.r.t. each pixel (Simonyan et al. 2014).",
       "pixel", False),
    _m("smoothgrad", "SmoothGrad", "Gradients averaged over noisy copies of the image (Smilkov et al. 2017).",
       "pixel", False, slow=True),
    _m("integrated-gradients", "Integrated gradients",
       "Gradients integrated along a path from a baseline image (Sundararajan et al. 2017).",
       "pixel", False, slow=True),
    _m("occlusion", "Occlusion", "Score drop when a sliding patch is hidden (Zeiler & Fergus 2014).",
       "perturbation", False, slow=True),
    _m("cam", "CAM", "Class activation map from a GAP + Dense head's weights (Zhou et al. 2016).",
       "cam", True),
    _m("gradcam", "Grad-CAM", "Layer activations weighted by averaged gradients (Selvaraju et al. 2017).",
       "cam", True),
    _m("gradcam-guided", "Grad-CAM (guided gradients)",
       "Grad-CAM averaging only gradients where activation and gradient are positive.", "cam", True),
    _m("gradcam++", "Grad-CAM++", "Grad-CAM with pixel-wise weights of positive gradients "
       "(Chattopadhyay et al. 2018).", "cam", True),
    _m("xgradcam", "XGrad-CAM", "Activation-normalised gradient weights (Fu et al. 2020).", "cam", True),
    _m("layercam", "Layer-CAM", "Activations times positive gradients, pixel by pixel (Jiang et al. 2021).",
       "cam", True),
    _m("hirescam", "HiResCAM", "Activations times gradients, no spatial averaging (Draelos & Carin 2020).",
       "cam", True),
    _m("eigencam", "Eigen-CAM", "First principal component of the activations; class-agnostic "
       "(Muhammad & Yeasin 2020).", "cam", True),
    _m("scorecam", "Score-CAM", "Channels weighted by the score of the image masked with them "
       "(Wang et al. 2020).", "perturbation", True, slow=True),
    _m("guided-backprop", "Guided backprop", "Gradients with only positive signals passed through ReLUs "
       "(Springenberg et al. 2015).", "pixel", False),
    _m("guided-gradcam", "Guided Grad-CAM", "Guided backprop times Grad-CAM (Selvaraju et al. 2017).",
       "pixel", True),
    _m("lime", "LIME", "Superpixels weighted by a linear surrogate fitted to random on/off samples "
       "(Ribeiro et al. 2016).", "perturbation", False, slow=True),
    _m("shap", "SHAP (partition)", "Owen values over a hierarchical split of the pixels (shap's "
       "Partition explainer, Lundberg & Lee 2017).", "perturbation", False, slow=True),
    _m("rise", "RISE", "Random smooth masks averaged, weighted by the model's score (Petsiuk et al. 2018).",
       "perturbation", False, slow=True),
    _m("expected-gradients", "Expected gradients", "Integrated gradients from baselines drawn from a "
       "background set (Erion et al. 2021; GradientSHAP).", "pixel", False, slow=True),
])

#: The gradient CAMs that share one forward + backward pass to the layer.
GRADIENT_CAMS = ("gradcam", "gradcam-guided", "gradcam++", "xgradcam", "layercam", "hirescam")


@dataclass(frozen=True)
class Option:
    default: object
    description: str


#: Method options accepted by Explainer.explain(**options) and .cost(**options).
OPTIONS: dict[str, Option] = {
    "smoothgrad_samples": Option(25, "SmoothGrad: number of noisy copies."),
    "smoothgrad_noise": Option(0.15, "SmoothGrad: noise std as a fraction of the input's value range."),
    "ig_steps": Option(32, "Integrated gradients: path steps (trapezoid rule)."),
    "ig_baseline": Option("black", "Integrated gradients: baseline image: black, grey, mean, blur, noise."),
    "occlusion_patch": Option(None, "Occlusion: patch side in model-input pixels (default: side/7)."),
    "occlusion_stride": Option(None, "Occlusion: stride in model-input pixels (default: patch/2)."),
    "occlusion_fill": Option("grey", "Occlusion: what hides the patch: grey, black, mean, blur."),
    "scorecam_top_k": Option(64, "Score-CAM: keep only the k channels with the largest mean "
                                 "activation (0 = all)."),
    "activations_top_k": Option(16, "Activations: how many channel maps to return."),
    "lime_samples": Option(1000, "LIME: random on/off samples (model evaluations)."),
    "lime_segments": Option(50, "LIME: number of SLIC superpixels asked for."),
    "lime_superpixels": Option("slic", "LIME: superpixel algorithm: slic, quickshift (LIME's own)."),
    "lime_fill": Option("grey", "LIME: what hides a superpixel: grey, blur, mean (its own mean colour)."),
    "lime_sign": Option("positive", "LIME: heatmap of the evidence: positive, negative, both (|weight|)."),
    "lime_top_k": Option(5, "LIME: superpixels listed (and outlined) as top positive / negative."),
    "lime_kernel_width": Option(0.25, "LIME: proximity kernel width (cosine distance)."),
    "shap_evals": Option(1000, "SHAP: model evaluations (the partition tree is expanded best-first)."),
    "shap_fill": Option("blur", "SHAP: what hides pixels: blur, grey, black, mean."),
    "rise_masks": Option(1000, "RISE: random masks (model evaluations)."),
    "rise_cells": Option(7, "RISE: mask grid cells per side before upsampling."),
    "rise_p": Option(0.5, "RISE: probability that a grid cell is shown."),
    "rise_fill": Option("grey", "RISE: what hides the masked parts: grey, black, mean, blur."),
    "eg_samples": Option(128, "Expected gradients: samples (gradient evaluations)."),
    "eg_background": Option("scenes", "Expected gradients: background set: scenes (generated), samples "
                                      "(the gallery); from Python also a folder Path or an image array."),
    "eg_noise": Option(0.0, "Expected gradients: noise std added to the image (fraction of the input "
                            "range; GradientSHAP's local smoothing)."),
    "batch_size": Option(16, "Images per batched model call (perturbation, black-box, SmoothGrad, IG)."),
    "seed": Option(0, "Random seed (SmoothGrad noise, noise baselines, LIME/RISE/expected-gradients "
                         "samples, SHAP tie-breaks)."),
}

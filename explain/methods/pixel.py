"""Pixel attributions: gradients of the score with respect to the input image, alone, averaged over
noisy copies, integrated along a path, or through ReLUs that pass only positive signals."""

from __future__ import annotations

import numpy as np

from explain import formulas as F
from explain.methods.cams import signed_gradients
from explain.spec import Method, Option


def _gradients(run, layer):
    return F.saliency(run.input_grad()), "abs", {}


def _no_relu(run) -> dict:
    if run.ex.graph.relu_count:
        return {}
    return {"warnings": ["the model has no ReLU, so guided backprop equals plain gradients here"]}


def _guided_backprop(run, layer):
    return F.saliency(run.input_grad(guided=True)), "abs", _no_relu(run)


def _guided_gradcam(run, layer):
    gb = F.saliency(run.input_grad(guided=True))
    cam, _ = F.normalize(F.gradcam(*signed_gradients(run, layer)), run.ex.input_size, "relu")
    return gb * cam, "abs", _no_relu(run)


def _smoothgrad(run, layer):
    n = int(run.opts["smoothgrad_samples"])
    sigma = float(run.opts["smoothgrad_noise"]) * float(run.x.max() - run.x.min() or 1.0)
    noise = run.rng.normal(0, sigma, (n,) + run.x.shape[1:]).astype(np.float32)

    def inputs(start, stop):
        return np.stack([run.x[0] if i == 0 else run.x[0] + noise[i - 1] for i in range(start, stop)])
    grads, _ = run.batched_grads(inputs, n + 1)
    return F.saliency(grads[1:].mean(axis=0)), "abs", {}


def _integrated_gradients(run, layer):
    steps = int(run.opts["ig_steps"])
    base = run.fill_input(run.opts["ig_baseline"], min(run.ex.input_size) / 20)[0]
    alphas = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)   # alpha 1 (clean image) first
    delta = run.x[0] - base

    def inputs(start, stop):
        return base[None] + alphas[start:stop, None, None, None] * delta[None]
    grads, out = run.batched_grads(inputs, steps + 1)
    w = np.full(steps + 1, 1.0 / steps, np.float32)
    w[0] = w[-1] = 0.5 / steps   # trapezoid rule
    attr = delta * np.tensordot(w, grads, axes=1)
    s = run.scores(out)
    gap = s[0] - s[-1]
    err = abs(float(attr.sum()) - gap) / max(abs(gap), 1e-6)
    warnings = []
    if err > 0.05:
        warnings.append(f"the map accounts for only {1 - err:.0%} of the score's change from the "
                        "blank image (completeness); more path steps (ig_steps) make it exact")
    return F.attribution_map(attr), "magnitude", {"completeness_error": err, "warnings": warnings}


def _gradient_x_input(run, layer):
    return F.gradient_x_input(run.x[0], run.input_grad()), "magnitude", {}


METHODS = (
    Method("gradients", "Vanilla gradients", "Which pixels would change the score most if nudged.",
           "Simonyan et al. 2014, Deep Inside Convolutional Networks: Visualising Image "
           "Classification Models and Saliency Maps", "map = max_c |dS/dx_c|", "pixel",
           compute=_gradients, passes=("grad",), scale_group="pixel"),
    Method("smoothgrad", "SmoothGrad", "Gradients averaged over noisy copies of the photo: less speckle.",
           "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
           "map = max_c |mean_n dS/dx_c(x + noise_n)|", "pixel", compute=_smoothgrad,
           traces=("grad",), units=lambda ex, o, layer: int(o["smoothgrad_samples"]) + 1,
           options=(Option("smoothgrad_samples", 25, "SmoothGrad: number of noisy copies.", lo=1,
                           page_max=200),
                    Option("smoothgrad_noise", 0.15, "SmoothGrad: noise std as a fraction of the "
                           "input's value range.", kind=float)),
           uses=("seed",), scale_group="pixel", slow=True),
    Method("integrated-gradients", "Integrated gradients",
           "How much each pixel adds to the score compared with a blank image.",
           "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks",
           "map = |sum_c (x - x')_c * integral_0^1 dS/dx_c(x' + a(x - x')) da| (trapezoid rule)",
           "pixel", compute=_integrated_gradients, traces=("grad",),
           units=lambda ex, o, layer: int(o["ig_steps"]) + 1,
           options=(Option("ig_steps", 32, "Integrated gradients: path steps (trapezoid rule).", lo=1,
                           page_max=256),
                    Option("ig_baseline", "black", "Integrated gradients: baseline image: black, grey, "
                           "mean, blur, noise.", kind=str, choices=("black", "grey", "mean", "blur", "noise"))),
           uses=("seed",), signed=True, scale_group="pixel", slow=True),
    Method("gradient-x-input", "Gradients × input",
           "Each pixel's value times how much the score reacts to it: which pixels pushed it up or down.",
           "Shrikumar et al. 2016, Not Just a Black Box: Learning Important Features Through "
           "Propagating Activation Differences; Ancona et al. 2018, Towards better understanding of "
           "gradient-based attribution methods for Deep Neural Networks",
           "map = |sum_c x_c * dS/dx_c| (x the model input; signed before the |.|)", "pixel",
           compute=_gradient_x_input, passes=("grad",), signed=True, scale_group="pixel"),
    Method("guided-backprop", "Guided backprop",
           "Gradients that only follow positive signals: sharp edges of what the model saw.",
           "Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net",
           "map = max_c |dS/dx_c| with ReLU gradients gated by (input > 0)(gradient > 0)", "pixel",
           compute=_guided_backprop, passes=("guided",), scale_group="pixel"),
    Method("guided-gradcam", "Guided Grad-CAM",
           "Guided backprop's sharp edges, kept only where Grad-CAM is hot.",
           "Selvaraju et al. 2017, Grad-CAM (guided Grad-CAM)", "map = guided backprop * Grad-CAM",
           "pixel", compute=_guided_gradcam, passes=("guided", "cam"), needs_layer=True,
           counterfactual=True, scale_group="pixel"),
)

"""Black-box methods: they only query the model's outputs on perturbed photos (formulas in
explain.lime, explain.shapley, explain.rise) or average gradients from many baselines
(explain.expected_gradients), each with a budget of model evaluations."""

from __future__ import annotations

import numpy as np

from explain import expected_gradients as EG
from explain import formulas as F
from explain import lime, rise, shapley
from explain.methods.perturbation import FILLS
from explain.spec import Method, Option, Setup


def _lime(run, layer):
    o, rng = run.opts, run.method_rng("lime")
    lime.check_sign(o["lime_sign"])   # before any model call
    s0 = run.clean_score()
    seg, how = lime.superpixels(run.pix, o["lime_segments"], o["lime_superpixels"])
    n_seg = int(seg.max()) + 1
    fill = lime.segment_means(run.pix, seg) if o["lime_fill"] == "mean" else \
        run.fill(o["lime_fill"], np.sqrt(seg.size / n_seg) / 2, rng)
    Z = lime.patterns(rng, n_seg, o["lime_samples"])
    y = run.masked_scores(run.ex.to_input(fill[None]), lime.SegmentMasks(seg, Z))
    fit = lime.ridge(Z, y, lime.kernel_weights(Z, o["lime_kernel_width"]))
    raw, mode, extra = lime.result(seg, fit, s0, o["lime_sign"], int(o["lime_top_k"]), how)
    extra["warnings"] = lime.warnings(fit, s0, y, how)
    return raw, mode, extra


def _shap(run, layer):
    s0 = run.clean_score()
    baseline = run.fill_input(run.opts["shap_fill"], min(run.ex.input_size) / 6, run.method_rng("shap"))
    values, base = shapley.owen_values(run.ex.input_size, lambda m: run.masked_scores(baseline, m),
                                       int(run.opts["shap_evals"]), run.opts["batch_size"],
                                       int(run.opts["seed"]))
    err = abs(float(values.sum()) - (s0 - base)) / max(abs(s0 - base), 1e-6)
    return values, "relu", {"base_score": base, "score": s0, "efficiency_error": err}


def _rise(run, layer):
    o, rng = run.opts, run.method_rng("rise")
    run.clean_score()
    masks = rise.RiseMasks(run.ex.input_size, int(o["rise_masks"]), int(o["rise_cells"]), o["rise_p"], rng)
    fill = run.fill_input(o["rise_fill"], max(masks.cell) / 2, rng)
    return masks.combine(run.masked_scores(fill, masks)), "relu", \
        {"masks": len(masks), "cells": int(o["rise_cells"]), "p": float(o["rise_p"])}


def _expected_gradients(run, layer):
    o, n = run.opts, int(run.opts["eg_samples"])
    run.clean_score()
    images = EG.background(o["eg_background"], run.ex.input_size)
    bg = run.ex.to_input(np.stack([run.ex.pixels(im) for im in images]))
    sigma = float(o["eg_noise"]) * float(run.x.max() - run.x.min() or 1.0)
    attr = EG.attributions(run.x[0], bg, n, sigma, run.method_rng("expected-gradients"), run.gradients_of,
                           batch_size=o["batch_size"], progress=run.sub_progress(n), cancel=run._cancel)
    return F.attribution_map(attr), "magnitude", {"samples": n, "backgrounds": len(bg)}


def _budget(name):
    return lambda ex, opts, layer: int(opts[name])


METHODS = (
    Method("lime", "LIME",
           "Hides random groups of regions, then fits a simple model of which regions the score needs.",
           "Ribeiro et al. 2016, \"Why Should I Trust You?\": Explaining the Predictions of Any "
           "Classifier", "map = weight of each SLIC superpixel in a kernel-weighted ridge fit of S "
           "on superpixels switched on/off", "perturbation", compute=_lime, passes=("forward",),
           traces=("blend",), units=_budget("lime_samples"),
           options=(Option("lime_samples", 1000, "LIME: random on/off samples (model evaluations).",
                           lo=1, page_max=10000),
                    Option("lime_segments", 50, "LIME: number of SLIC superpixels asked for.", lo=1,
                           page_max=500),
                    Option("lime_superpixels", "slic", "LIME: superpixel algorithm: slic, quickshift "
                           "(LIME's own).", kind=str, choices=lime.SUPERPIXELS),
                    Option("lime_fill", "grey", "LIME: what hides a superpixel: grey, blur, mean (its own "
                           "mean colour).", kind=str, choices=("grey", "blur", "mean")),
                    Option("lime_sign", "positive", "LIME: heatmap of the evidence: positive, negative, "
                           "both (|weight|).", kind=str, choices=lime.SIGNS),
                    Option("lime_top_k", 5, "LIME: superpixels listed (and outlined) as top positive / "
                           "negative.", page_max=50),
                    Option("lime_kernel_width", 0.25, "LIME: proximity kernel width (cosine distance).",
                           kind=float, shown=False)),
           uses=("seed",), signed=True, scale_group="perturbation", slow=True),
    Method("shap", "SHAP (partition)",
           "Shares the score fairly among regions of the photo (game theory), coarse to fine.",
           "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (the shap "
           "library's Partition explainer)", "map = Owen values over a hierarchy of image regions, "
           "hidden by blurring", "perturbation", compute=_shap, passes=("forward",), traces=("blend",),
           units=_budget("shap_evals"),
           options=(Option("shap_evals", 1000, "SHAP: model evaluations (the partition tree is expanded "
                           "best-first).", lo=1, page_max=20000),
                    Option("shap_fill", "blur", "SHAP: what hides pixels: blur, grey, black, mean.",
                           kind=str, choices=("blur", "grey", "black", "mean"))),
           uses=("seed", "batch_size"), signed=True, scale_group="perturbation", slow=True,
           setup=Setup(shapley.compile_library, typical=5.4)),
    Method("rise", "RISE", "Shows the model thousands of randomly masked copies; regions present when "
           "the score is high light up.",
           "Petsiuk et al. 2018, RISE: Randomized Input Sampling for Explanation of Black-box Models",
           "map = sum_n S(x * M_n) M_n / (N p), M_n random smooth masks", "perturbation",
           compute=_rise, passes=("forward",), traces=("blend",), units=_budget("rise_masks"),
           options=(Option("rise_masks", 1000, "RISE: random masks (model evaluations).", lo=1,
                           page_max=20000),
                    Option("rise_cells", 7, "RISE: mask grid cells per side before upsampling.", lo=1,
                           page_max=64),
                    Option("rise_p", 0.5, "RISE: probability that a grid cell is shown.", kind=float,
                           shown=False),
                    Option("rise_fill", "grey", "RISE: what hides the masked parts: grey, black, mean, "
                           "blur.", kind=str, choices=FILLS)),
           uses=("seed",), scale_group="perturbation", slow=True),
    Method("expected-gradients", "Expected gradients",
           "Integrated gradients from many reference photos instead of one blank image.",
           "Erion et al. 2021, Improving performance of deep learning models with axiomatic "
           "attribution priors and expected gradients (GradientSHAP)",
           "map = |sum_c E_{b, a}[(x - b)_c dS/dx_c(b + a(x - b))]|", "pixel",
           compute=_expected_gradients, passes=("forward",), traces=("grad",), units=_budget("eg_samples"),
           options=(Option("eg_samples", 128, "Expected gradients: samples (gradient evaluations).", lo=1,
                           page_max=2000),
                    Option("eg_background", "scenes", "Expected gradients: background set: scenes "
                           "(generated), samples (the gallery); from Python also a folder Path or an "
                           "image array.", kind=str, choices=("scenes", "samples")),
                    Option("eg_noise", 0.0, "Expected gradients: noise std added to the image (fraction "
                           "of the input range; GradientSHAP's local smoothing).", kind=float)),
           uses=("seed",), signed=True, scale_group="pixel", slow=True),
)

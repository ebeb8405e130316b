"""One explain() call: its plan (which shared passes, how many model evaluations), the shared
passes computed lazily once, the target resolved once, progress and cancellation.

Method bodies (explain.methods) see only this object: `run.cam_pass(layer)`, `run.acts(layer)`,
`run.input_grad()`, `run.batched_grads(...)`, `run.masked_scores(...)`, `run.scores(outputs)`.
"""

from __future__ import annotations

import time
import zlib
from typing import Callable

import numpy as np

from explain import formulas as F
from explain.errors import Cancelled, MethodNotApplicable
from explain.inputs import fill
from explain.perturb import run_batches
from explain.result import MethodResult
from explain.spec import Method, Score


def method_layer(ex, m: Method, layers: tuple[str, ...] | None,
                 layer_given: bool) -> str | tuple[str, ...] | None:
    """The layer `m` works on: its own choice (CAM: the layer feeding the GAP head), else the
    run's layer for layer methods, else None. Given several layers (the run's, in the model's
    order): the tuple for a method that `fuses`; MethodNotApplicable for one that takes one."""
    if not m.needs_layer and m.layer_of is None:
        return None
    if layers is not None and len(layers) > 1 and (m.layer_of is not None or not m.fuses):
        raise MethodNotApplicable(f"{m.name} takes one layer, not {len(layers)}: choose one "
                                  "(only the methods that fuse several layers' maps take more)")
    layer = layers[0] if layers else None
    if m.layer_of is not None:
        return m.layer_of(ex, layer if layer_given else None)
    return layers if layers is not None and len(layers) > 1 else layer


def plan(ex, methods: list[Method], opts: dict, layers: tuple[str, ...] | None, layer_given: bool):
    """Model evaluations each method adds, in order (a pass shared with an earlier method counts
    once), and whether the layers' forward + backward pass runs (it then also supplies the
    activations). The run's layers share one pass, however many there are."""
    use_cam = any("cam" in m.passes for m in methods)
    done, cost = set(), {}
    for m in methods:
        lay = planned_layer(ex, m, layers, layer_given)
        ours = lay is not None and set(lay if isinstance(lay, tuple) else (lay,)) <= set(layers or ())
        need = {}
        for p in m.passes:
            tap = f"tap:{layers if ours else lay}"
            key = ("cam" if use_cam and ours else tap) if p == "acts" else p
            need[key] = 1
        if m.units is not None:
            need[m.id] = int(m.units(ex, opts, lay))
        cost[m.id] = sum(u for k, u in need.items() if k not in done)
        done |= set(need)
    return cost, use_cam


def planned_layer(ex, m: Method, layer, layer_given) -> str | None:
    """method_layer, or None where the method cannot run (explain() raises that error first)."""
    try:
        return method_layer(ex, m, layer, layer_given)
    except MethodNotApplicable:
        return None


class Run:
    """Shared passes computed lazily once; the target is the one given, or the top-1 class that the
    first pass resolves (inside the compiled pass: no extra forward), then fixed for every method."""

    def __init__(self, ex, image, layers, layer_given, score: Score, opts, progress, cancel):
        self.ex, self.passes = ex, ex.passes
        self.layers, self.layer_given = layers, layer_given   # a tuple (model order), or None
        self.score, self.opts = score, opts
        self.target = score.target
        self.pix = ex.pixels(image)   # validates the image first
        self.out_hw = tuple(image.shape[:2])
        self.x = ex.to_input(self.pix[None])
        self._progress, self._cancel = progress, cancel
        self._done, self._total = 0.0, 1
        self._cache: dict = {}
        self.cam_weights: dict = {}   # layer -> its CAM head's kernel, from the pass that ran
        self._rng = None
        self.use_cam = False
        self.outputs = None   # the clean image's pre-activation outputs (classes,)

    # -- bookkeeping -------------------------------------------------------------------------------
    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(int(self.opts["seed"]))
        return self._rng

    def method_rng(self, method: str) -> np.random.Generator:
        """A generator of its own per method, so a method's result depends on the seed only, not
        on which other methods ran before it in the same call."""
        return np.random.default_rng([int(self.opts["seed"]), zlib.crc32(method.encode())])

    def check(self):
        if self._cancel is not None and self._cancel():
            raise Cancelled()

    def _report(self):
        if self._progress is not None:
            self._progress(min(1.0, self._done / self._total))

    def advance(self, units):
        self._done += units
        self._report()

    def sub_progress(self, units):
        start = self._done

        def cb(frac):
            self._done = start + frac * units
            self._report()
        return cb

    def _got(self, t, out_row):
        if self.target is None:
            self.target = int(t)
        if self.outputs is None:
            self.outputs = np.asarray(out_row, np.float64)

    def fill(self, how, blur_sigma: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """A fill image (pixel space) the size of the model input (explain.inputs.fill)."""
        return fill(self.pix, how, rng or self.rng, blur_sigma)

    def fill_input(self, how, blur_sigma: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """The same, as model input (1, H, W, C)."""
        return self.ex.to_input(self.fill(how, blur_sigma, rng)[None])

    # -- shared passes -----------------------------------------------------------------------------
    def _group(self, layer):
        """What one pass taps to serve `layer`: all the run's layers when it is one of them (layer
        fusion: one pass for all), else the layer alone; as a pass key (str, or a tuple)."""
        if self.layers is not None and len(self.layers) > 1 and layer in self.layers:
            return self.layers
        return layer

    def cam_pass(self, layer):
        """(A, G) of the clean image at `layer` (forward + backward; one per call serves all the
        run's layers)."""
        key = ("cam", layer)
        if key not in self._cache:
            self.check()
            group = self._group(layer)
            A, G, out, t, W = self.passes.layer_pass(self.x, group, self.target, self.score.kind,
                                                     self.score.contrast)
            self._got(t, out[0])
            if not isinstance(group, tuple):
                group, A, G, W = (group,), (A,), (G,), (W,)
            for p, a, g, w in zip(group, A, G, W):
                self._cache[("cam", p)] = (a[0], g[0])
                self.cam_weights[p] = w
            self.advance(1)
        return self._cache[key]

    def acts(self, layer):
        """Activations A at `layer`: from the gradient pass when it runs anyway, else a tap."""
        if self.use_cam and self.layers is not None and layer in self.layers:
            return self.cam_pass(layer)[0]
        key = ("tap", layer)
        if key not in self._cache:
            self.check()
            group = self._group(layer)
            A, out, W = self.passes.tap(self.x, group)
            if not isinstance(group, tuple):
                group, A, W = (group,), (A,), (W,)
            for p, a, w in zip(group, A, W):
                self._cache[("tap", p)] = a[0]
                self.cam_weights[p] = w
            self._got(int(np.argmax(out[0])), out[0])
            self.advance(1)
        return self._cache[key]

    def input_grad(self, guided=False):
        key = ("guided" if guided else "grad",)
        if key not in self._cache:
            self.check()
            g, out, t = self.passes.input_gradients(self.x, self.target, self.score.kind, guided=guided,
                                                    contrast=self.score.contrast)
            self._got(t, out[0])
            self._cache[key] = g[0]
            self.advance(1)
        return self._cache[key]

    def gradients_of(self, xb: np.ndarray) -> np.ndarray:
        """Input gradients of the run's score for a batch (target resolved)."""
        return self.passes.input_gradients(xb, self.target, self.score.kind,
                                           contrast=self.score.contrast)[0]

    def batched_grads(self, inputs_for: Callable[[int, int], np.ndarray], n: int):
        """Gradients and outputs for n generated inputs (row 0 must be the clean image so the
        top-1 target is resolved on it)."""
        progress = self.sub_progress(n)

        def compute(start, stop):
            g, out, t = self.passes.input_gradients(inputs_for(start, stop), self.target, self.score.kind,
                                                    contrast=self.score.contrast)
            if start == 0:
                self._got(t, out[0])
            return g, out
        parts = run_batches(n, compute, batch_size=self.opts["batch_size"], progress=progress,
                            cancel=self._cancel)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """(N, classes) outputs -> (N,) the run's score (target resolved)."""
        return self.passes.scores(outputs, self.target, self.score.kind, self.score.contrast)

    def clean_score(self) -> float:
        if self.outputs is None:
            self.check()
            out = self.passes.forward(self.x)
            self._got(int(np.argmax(out[0])), out[0])
            self.advance(1)
        return float(self.scores(self.outputs[None])[0])

    def masked_outputs(self, baseline: np.ndarray, masks, units: int | None = None) -> np.ndarray:
        """Outputs of the image blended with `baseline` (model input) by each mask, batched."""
        return self.passes.masked_outputs(self.x, baseline, masks, batch_size=self.opts["batch_size"],
                                          progress=self.sub_progress(len(masks) if units is None else units),
                                          cancel=self._cancel)

    def masked_scores(self, baseline: np.ndarray, masks) -> np.ndarray:
        """The run's score of the image blended with `baseline` by each mask (target resolved)."""
        return self.scores(self.masked_outputs(baseline, masks))

    # -- driver ------------------------------------------------------------------------------------
    def execute(self, methods: list[Method]) -> dict[str, MethodResult]:
        cost, self.use_cam = plan(self.ex, methods, self.opts, self.layers, self.layer_given)
        self._total = max(1, sum(cost.values()))
        if self._progress is not None:
            self._progress(0.0)
        results = {}
        # One block for all heatmaps: NumPy backs blocks >= 4 MiB with huge pages, so filling it
        # takes a tenth of the page faults of one fresh array per method (~0.35 ms each at 640x480).
        heatmaps = np.empty((len(methods), *self.out_hw), np.float32)
        for i, m in enumerate(methods):
            self.check()
            t0 = time.perf_counter()
            layer = method_layer(self.ex, m, self.layers, self.layer_given)
            if isinstance(layer, tuple):
                raw, mode, extra = self._fused(m, layer)
                layer = " + ".join(layer)
            else:
                raw, mode, extra = m.compute(self, layer)
            warnings = list(extra.pop("warnings", []))
            heatmap, w2 = F.normalize(raw, self.out_hw, mode, out=heatmaps[i])
            warnings += w2 + self._score_warnings(m)
            results[m.id] = MethodResult(m.id, heatmap, np.asarray(raw, np.float32),
                                         time.perf_counter() - t0, int(self.target), layer, warnings, extra,
                                         signed=self.signed(m, mode), mode=mode)
        self._done = self._total
        self._report()
        return results

    def _fused(self, m: Method, layers: tuple[str, ...]):
        """`m`'s map at each layer (their passes shared), fused (explain.formulas.fuse); extra
        "layers" names them, "per_layer" holds each layer's extra."""
        raws, warnings, extras = [], [], {}
        for p in layers:
            raw, mode, extra = m.compute(self, p)
            warnings += [f"{p}: {w}" for w in extra.pop("warnings", [])]
            raws.append(raw)
            extras[p] = extra
        fused, w = F.fuse(raws, mode=mode, names=layers)
        extra = {"layers": list(layers), "warnings": warnings + w}
        if any(extras.values()):
            extra["per_layer"] = extras
        return fused, "abs", extra

    def signed(self, m: Method, mode: str) -> bool:
        """Declared signed, or run with a contrast B on a map with a sign (not an |.| map): the
        score S_target - S_B makes negative values evidence for B."""
        return m.signed or (self.score.contrast is not None and m.needs_target and mode == "relu")

    def _score_warnings(self, m: Method) -> list[str]:
        w = []
        if self.score.counterfactual and not m.counterfactual:
            w.append("counterfactual applies to the CAM family only; ignored here")
        if self.score.kind == "probability" and m.needs_target and self.outputs is not None:
            p = float(self.passes.probabilities(self.outputs[None])[0, self.target])
            if p > 0.999:
                w.append(f"the target's probability is {p:.4f}: the softmax is saturated, so its "
                         "gradients and score changes are near zero; use the logit score")
        return w

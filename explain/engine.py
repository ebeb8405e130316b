"""The Explainer: one Keras model + its preprocessing -> predictions and explanation heatmaps.

The public face of the engine: it validates what callers ask for, then hands the work to a run
(explain.run) whose methods (explain.methods) are small formulas on a few shared compiled passes
(explain.passes). Inputs are prepared by explain.inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from explain import inputs
from explain.errors import ExplainError, LayerError, MethodNotApplicable
from explain.graph import FlatGraph
from explain.kept import KeptPasses
from explain.methods import METHODS, check_options
from explain.passes import Passes
from explain.result import MethodResult, Prediction
from explain.run import Run, method_layer, plan, planned_layer
from explain.spec import Method, Score

__all__ = ["Explainer", "MethodResult", "Prediction"]


class Explainer:
    """Explanations for one Keras image classifier (see explain/README.md for the API)."""

    def __init__(self, model, preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
                 labels: Sequence[str] | None = None, input_size: tuple[int, int] | None = None,
                 default_layer: str | None = None, kept_passes: str | Path | None = None):
        self.model = model
        self.graph = FlatGraph(model)
        _, h, w, c = self.graph.input_shape
        if input_size is not None:
            input_size = (int(input_size[0]), int(input_size[1]))
            if (h and h != input_size[0]) or (w and w != input_size[1]):
                raise ExplainError(f"input_size {input_size} does not match the model's input ({h}, {w})")
        self._size = input_size or (h or 224, w or 224)
        if c not in (1, 3):
            raise ExplainError(f"the model expects {c} input channels; only 1 (grey) or 3 (RGB) work")
        self._channels = int(c)
        self.num_classes = int(self.graph.output_shape[-1] or 0)
        if labels is None:
            labels = [f"class {i}" for i in range(self.num_classes)]
        if len(labels) != self.num_classes:
            raise ExplainError(f"{len(labels)} labels for a model with {self.num_classes} outputs")
        self._labels = [str(x) for x in labels]
        self.preprocess = preprocess
        self._default_layer = (self.graph.resolve(default_layer) if default_layer
                               else self.graph.default_layer())
        self._cam_heads: dict[str, object] = {}   # layer -> its GAP + Dense head (None: no CAM)
        # kept_passes: a private folder where traced passes are saved and later processes load them
        # from instead of tracing (explain.kept); None traces in every process.
        kept = KeptPasses(kept_passes, model) if kept_passes is not None else None
        self.passes = Passes(self.graph, self._size, self._channels, self._cam_dense, kept)

    # -- properties --------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self._size

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def default_layer(self) -> str | None:
        return self._default_layer

    def spatial_layers(self) -> list[str]:
        return self.graph.spatial_layers()

    # -- inputs (explain.inputs) -------------------------------------------------------------------
    def pixels(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB image of any size -> float32 (H, W, 3) in 0..255 at the model's input size."""
        return inputs.pixels(image, self._size)

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, 3) pixels in 0..255 -> model input (grey conversion, preprocess)."""
        return inputs.to_input(pixels, self._size, self._channels, self.preprocess)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Model input (1, H, W, C) for a uint8 RGB image."""
        return self.to_input(self.pixels(image)[None])

    # -- passes (explain.passes), for metrics and scripts -----------------------------------------
    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs (pre-activation scores) -> probabilities (softmax, or sigmoid heads)."""
        return self.passes.probabilities(outputs)

    def scores(self, outputs: np.ndarray, target: int, score: str = "logit",
               contrast: int | None = None) -> np.ndarray:
        """(N, classes) outputs -> (N,) score of `target` (logit, or probability), minus `contrast`'s."""
        return self.passes.scores(outputs, target, score, contrast)

    def masked_outputs(self, x: np.ndarray, baseline: np.ndarray, masks, *, batch_size: int = 16,
                       progress=None, cancel=None) -> np.ndarray:
        """(N, classes) pre-activation outputs for x blended with baseline by each mask
        (explain.perturb; for perturbation methods and metrics)."""
        return self.passes.masked_outputs(x, baseline, masks, batch_size=batch_size, progress=progress,
                                          cancel=cancel)

    def input_gradients(self, xb: np.ndarray, target: int | None, score: str = "logit",
                        guided: bool = False, contrast: int | None = None):
        """Gradient of the target score w.r.t. each input of a batch (rows independent).
        target None = top-1 of row 0. Returns (gradients, outputs, target)."""
        return self.passes.input_gradients(xb, target, score, guided, contrast)

    def warmup(self, layer: str | Sequence[str] | None = None,
               methods: Sequence[str] = ("gradcam",)) -> None:
        """Trace the passes `methods` need (default: the gradient CAMs) for `layer` (a path, or
        several: one pass taps them all) now; no methods: the forward pass (predictions) only."""
        if not isinstance(methods, str) and len(methods) == 0:
            self.passes.forward(np.zeros((1, *self._size, self._channels), np.float32))
            return
        chosen = self._methods(methods)
        given = _given(layer)
        if not given and self._default_layer is None:   # no spatial layer: pixel methods only
            chosen = [m for m in chosen if not m.needs_layer]
        lay = self._layers(layer) if any(m.needs_layer for m in chosen) else None
        x = np.zeros((1, *self._size, self._channels), np.float32)
        self.passes.forward(x)
        use_cam = any("cam" in m.passes for m in chosen)
        _set_up(chosen)
        for m in chosen:
            kinds = set(m.passes) | set(m.traces)
            if "cam" in kinds:
                self.passes.layer_pass(x, lay if len(lay) > 1 else lay[0], None)
            if "blend" in kinds:   # the masked forwards of the perturbation methods; traced and run
                self.passes.masked_outputs(x, x, np.ones((1, 1, 1), np.float32))   # once: its first
                # run costs as much again as the trace (graph optimisation), later batch shapes little
            tapped = planned_layer(self, m, lay, given)
            ours = lay is not None and tapped in (lay, lay[0])
            if "acts" in kinds and tapped is not None and not (use_cam and ours):
                self.passes.tap(x, lay if ours and len(lay) > 1 else tapped)
            if isinstance(tapped, tuple):
                continue
            if "ablate" in kinds and tapped is not None:   # the model resumed from the layer
                self.passes.fn("ablate", tapped)
                if self.graph.resume_plan(tapped).below:
                    self.passes.fn("below", tapped)
            for kind in ("grad", "guided"):
                if kind in kinds:
                    self.passes.input_gradients(x, None, guided=kind == "guided")

    # -- public API --------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, top: int = 5) -> list[Prediction]:
        """Top classes by probability for a uint8 RGB image."""
        p = self.probabilities(self.passes.forward(self.prepare(image)))[0]
        order = np.argsort(-p)[: max(1, int(top))]
        return [Prediction(int(i), self._labels[i], float(p[i])) for i in order]

    def cost(self, methods: Sequence[str], layer: str | Sequence[str] | None = None,
             **options) -> dict[str, int]:
        """Model passes each method adds, in order (a pass shared with an earlier method in the
        list counts once), so sum(cost.values()) estimates the whole call. Several layers share
        one pass."""
        chosen = self._methods(methods)
        opts = check_options(options)
        lay = self._layers(layer) if any(m.needs_layer for m in chosen) else None
        return plan(self, chosen, opts, lay, _given(layer))[0]

    def explain(self, image: np.ndarray, methods: Sequence[str],
                layer: str | Sequence[str] | None = None,
                target: int | None = None, *, score: str = "logit", counterfactual: bool = False,
                contrast: int | None = None, progress: Callable[[float], None] | None = None,
                cancel: Callable[[], bool] | None = None, **options) -> dict[str, MethodResult]:
        """Heatmaps for `methods` on a uint8 RGB image (target None = top-1 class; contrast B: explain
        "why the target rather than B", score S_target - S_B).

        `layer`: a layer path, or several (layer fusion): a method that `fuses` (the CAM family)
        then gives one map per layer, fused by explain.formulas.fuse, all layers tapped by one
        pass; its result's `layer` is the paths joined with " + " in the model's order. A method
        that takes one layer raises MethodNotApplicable."""
        chosen = self._methods(methods)
        opts = check_options(options)
        the_score = Score(score, target, contrast, bool(counterfactual)).checked(self.num_classes)
        lay = self._layers(layer) if any(m.needs_layer for m in chosen) else None
        given = _given(layer)
        for m in chosen:   # fail before any work is done (CAM on a model without a GAP head)
            if m.layer_of is not None or m.needs_layer:
                method_layer(self, m, lay, given)
        _set_up(chosen)   # outside the methods' own timing
        run = Run(self, image, lay, given, the_score, opts, progress, cancel)
        return run.execute(chosen)

    # -- validation --------------------------------------------------------------------------------
    def _methods(self, methods) -> list[Method]:
        if isinstance(methods, str):
            methods = [methods]
        out = []
        for m in methods:
            if m not in METHODS:
                raise ExplainError(f"unknown method {m!r}; choose from: {', '.join(METHODS)}")
            if METHODS[m] not in out:
                out.append(METHODS[m])
        if not out:
            raise ExplainError("no method chosen")
        return out

    def _layer(self, layer: str | None) -> str:
        if layer is None:
            if self._default_layer is None:
                raise LayerError("the model has no layer with a spatial output to explain")
            return self._default_layer
        return self.graph.resolve(layer)

    def _layers(self, layer: str | Sequence[str] | None) -> tuple[str, ...]:
        """One path or several -> validated paths, duplicates dropped, in the model's order (so
        the same set is the same request); None or none: the default layer."""
        if not _given(layer):
            return (self._layer(None),)
        if isinstance(layer, str):
            return (self._layer(layer),)
        order = {p: i for i, p in enumerate(self.graph.spatial_layers())}
        return tuple(sorted({self._layer(str(p)) for p in layer}, key=lambda p: order.get(p, -1)))

    def cam_layer(self, layer: str | None = None) -> str:
        """The layer CAM uses: `layer`, or by default the one feeding the GAP + Dense head."""
        if layer is None:
            for p in reversed(self.graph.spatial_layers()):
                if self._cam_dense(p) is not None:
                    return p
            raise MethodNotApplicable("CAM needs a GlobalAveragePooling + Dense head; this model has "
                                      "none (Grad-CAM generalises CAM to any head)")
        if self._cam_dense(layer) is None:
            raise MethodNotApplicable(f"CAM needs layer '{layer}' to feed GlobalAveragePooling then the "
                                      "final Dense; it does not (use Grad-CAM, which generalises CAM)")
        return layer

    def _cam_dense(self, path: str):
        """The final Dense layer if `path` -> GlobalAveragePooling2D -> [Dropout..] -> Dense(head)."""
        if path not in self._cam_heads:
            self._cam_heads[path] = self._find_cam_dense(path)
        return self._cam_heads[path]

    def _find_cam_dense(self, path: str):
        import keras
        nxt = self.graph.consumers(path)
        if len(nxt) != 1:
            return None
        gap = self.graph.layers[nxt[0]].layer
        if not isinstance(gap, keras.layers.GlobalAveragePooling2D) or getattr(gap, "keepdims", False):
            return None
        cur = nxt[0]
        while True:
            nxt = self.graph.consumers(cur)
            if len(nxt) != 1:
                return None
            op = self.graph.layers[nxt[0]].layer
            if isinstance(op, keras.layers.Dense):
                return op if nxt[0] == self.graph.head_path else None
            if not isinstance(op, (keras.layers.Dropout, keras.layers.Flatten)):
                return None
            cur = nxt[0]


def _given(layer) -> bool:
    """Whether the caller chose a layer (a path, or a non-empty list of them)."""
    return layer is not None and (isinstance(layer, str) or len(layer) > 0)


def _set_up(methods: Sequence[Method]) -> None:
    """Run the methods' one-off library set-ups (explain.spec.Setup) not yet run in this process."""
    for m in methods:
        if m.setup is not None:
            m.setup()

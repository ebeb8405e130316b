"""The Explainer: one Keras model + its preprocessing -> predictions and explanation heatmaps.

Speed comes from sharing: every method is a small formula (explain.formulas) on a few compiled
passes, each a ``tf.function`` traced once per (layer, pass kind, score mode) and cached:

- ``cam``: one forward + backward to the layer -> activations A, gradients G, outputs. All
  gradient CAMs requested together (and guided Grad-CAM's CAM part) share it.
- ``tap``: forward only -> A, outputs (Activations, Eigen-CAM, CAM, Score-CAM when no gradient
  CAM is requested). Both also return the layer's CAM head kernel (empty if it has none).
- ``grad`` / ``guided``: forward + backward to the input (gradients, SmoothGrad, IG / guided
  backprop), batched.
- ``blend``: batched masked forwards (explain.perturb) for Score-CAM, occlusion and the black-box
  methods (LIME, SHAP, RISE: explain.lime, explain.shapley, explain.rise); expected gradients
  (explain.expected_gradients) uses the batched ``grad`` pass.
"""

from __future__ import annotations

import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
import tensorflow as tf

from explain import expected_gradients as EG
from explain import formulas as F
from explain import lime, rise, shapley
from explain.errors import Cancelled, ExplainError, ImageError, LayerError, MethodNotApplicable
from explain.graph import FlatGraph
from explain.methods import GRADIENT_CAMS, METHODS, OPTIONS
from explain.perturb import OcclusionMasks, make_blend_forward, run_batches, run_masked

_NEEDS_A = ("activations", "eigencam", "cam", "scorecam")
_SCORELESS = ("activations", "eigencam")   # class-agnostic: no score, no counterfactual
#: Black-box methods: the option holding each one's budget of model evaluations.
_BUDGETS = {"lime": "lime_samples", "shap": "shap_evals", "rise": "rise_masks",
            "expected-gradients": "eg_samples"}


@dataclass
class Prediction:
    index: int
    label: str
    probability: float


@dataclass
class MethodResult:
    method: str
    heatmap: np.ndarray            # float32 (H, W) in [0, 1] at the input image's own size (a row of
    #                                one block shared by the call's heatmaps)
    raw: np.ndarray                # float32 (h, w) unnormalised, signed, at its native resolution
    seconds: float
    target: int
    layer: str | None
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Explainer:
    """Explanations for one Keras image classifier (see explain/README.md for the API)."""

    def __init__(self, model, preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
                 labels: Sequence[str] | None = None, input_size: tuple[int, int] | None = None,
                 default_layer: str | None = None):
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
        self._squash = "sigmoid" if self.graph.head_activation == "sigmoid" or self.num_classes == 1 \
            else "softmax"
        self._preprocess = preprocess
        self._default_layer = (self.graph.resolve(default_layer) if default_layer
                               else self.graph.default_layer())
        self._fns: dict[tuple, Callable] = {}
        self._cam_heads: dict[str, object] = {}   # layer -> its GAP + Dense head (None: no CAM)
        self._lock = threading.Lock()

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

    # -- inputs ------------------------------------------------------------------------------------
    def pixels(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB image of any size -> float32 (H, W, 3) in 0..255 at the model's input size
        (Gaussian-pyramid halving while both sides are 2x or more too large, then bilinear, or an
        area filter when one side is still 2x too large)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise ImageError("the image must be a uint8 RGB array")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
            raise ImageError(f"the image must be H x W x 3 (RGB); got shape {image.shape}")
        image = image[..., :3]
        H, W = self._size
        while image.shape[0] >= 2 * H and image.shape[1] >= 2 * W:
            image = cv2.pyrDown(image)   # anti-aliased halving: 1/4 the cost of an area filter
        if image.shape[:2] != (H, W):
            # one side still 2x+ too large (a very wide or tall image): the area filter, any factor
            skewed = image.shape[0] >= 2 * H or image.shape[1] >= 2 * W
            image = cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA if skewed else cv2.INTER_LINEAR)
        return image.astype(np.float32)

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, H, W, 3) pixels in 0..255 -> model input (grey conversion, preprocess)."""
        p = np.array(pixels, np.float32, copy=True)   # preprocess functions often work in place
        if self._channels == 1:
            p = (p @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        if self._preprocess is not None:
            p = np.asarray(self._preprocess(p), np.float32)
        want = (len(pixels),) + self._size + (self._channels,)
        if p.shape != want:
            raise ExplainError(f"preprocess returned shape {p.shape}, expected {want}")
        return p

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Model input (1, H, W, C) for a uint8 RGB image."""
        return self.to_input(self.pixels(image)[None])

    # -- compiled passes ---------------------------------------------------------------------------
    def _fn(self, kind: str, layer: str | None = None, score: str = "logit"):
        """The pass, traced on first use. Kept as the concrete function: calling it skips
        tf.function's per-call signature matching (~0.5 ms, a tenth of a small model's pass)."""
        key = (kind, layer, score)
        with self._lock:
            fn = self._fns.get(key)
            if fn is None:
                fn = self._fns[key] = self._build(kind, layer, score).get_concrete_function()
        return fn

    def _build(self, kind, layer, score):
        xs = tf.TensorSpec([None, *self._size, self._channels], tf.float32)
        ts = tf.TensorSpec([], tf.int32)
        graph = self.graph

        def outputs(x, taps=(), guided=False):
            out, found = graph.run(x, taps, guided=guided)
            return tf.cast(out, tf.float32), {k: tf.cast(v, tf.float32) for k, v in found.items()}

        def resolve(out, target):
            return tf.where(target < 0, tf.cast(tf.argmax(out[0]), tf.int32), target)

        def total_score(out, t):
            s = out if score == "logit" else self._squash_tf(out)
            return tf.reduce_sum(tf.gather(s, t, axis=1))

        if kind == "forward":
            return tf.function(lambda x: outputs(x)[0], input_signature=[xs], autograph=False)
        if kind == "blend":
            return make_blend_forward(lambda x: outputs(x)[0], self._size, self._channels)
        head = self._cam_dense(layer) if layer is not None else None

        def cam_weights():
            """The CAM head's Dense kernel (K, classes), read inside the pass (after it, a variable
            read costs CAM ~0.3 ms); empty when `layer` does not feed a GAP + Dense head."""
            return tf.cast(head.kernel, tf.float32) if head is not None else tf.zeros((0, 0))

        if kind == "tap":
            @tf.function(input_signature=[xs], autograph=False)
            def tap(x):
                out, found = outputs(x, (layer,))
                return found[layer], out, cam_weights()
            return tap
        if kind == "cam":
            @tf.function(input_signature=[xs, ts], autograph=False)
            def cam_pass(x, target):
                with tf.GradientTape() as tape:
                    tape.watch(x)   # so frozen (non-trainable) models are still recorded
                    out, found = outputs(x, (layer,))
                    t = resolve(out, target)
                    s = total_score(out, t)
                A = found[layer]
                return A, tape.gradient(s, A), out, t, cam_weights()
            return cam_pass
        if kind in ("grad", "guided"):
            @tf.function(input_signature=[xs, ts], autograph=False)
            def grad_pass(x, target):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    out, _ = outputs(x, guided=kind == "guided")
                    t = resolve(out, target)
                    s = total_score(out, t)
                return tape.gradient(s, x), out, t
            return grad_pass
        raise ValueError(kind)

    def _squash_tf(self, out):
        return tf.sigmoid(out) if self._squash == "sigmoid" else tf.nn.softmax(out, axis=-1)

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs (pre-activation scores) -> probabilities (softmax, or sigmoid heads)."""
        o = np.asarray(outputs, np.float64)
        return (1 / (1 + np.exp(-o))) if self._squash == "sigmoid" else F.softmax(o)

    def scores(self, outputs: np.ndarray, target: int, score: str = "logit") -> np.ndarray:
        """(N, classes) outputs -> (N,) score of `target` (logit, or probability)."""
        o = outputs if score == "logit" else self.probabilities(outputs)
        return np.asarray(o, np.float64)[:, target]

    def masked_outputs(self, x: np.ndarray, baseline: np.ndarray, masks, *, batch_size: int = 16,
                       progress=None, cancel=None) -> np.ndarray:
        """(N, classes) pre-activation outputs for x blended with baseline by each mask
        (explain.perturb; for perturbation methods and metrics)."""
        return run_masked(self._fn("blend"), x, baseline, masks, batch_size=batch_size,
                          progress=progress, cancel=cancel)

    def input_gradients(self, xb: np.ndarray, target: int | None, score: str = "logit",
                        guided: bool = False):
        """Gradient of the target score w.r.t. each input of a batch (rows independent).
        target None = top-1 of row 0. Returns (gradients, outputs, target)."""
        fn = self._fn("guided" if guided else "grad", None, score)
        g, out, t = fn(tf.constant(xb, tf.float32), tf.constant(-1 if target is None else target, tf.int32))
        return g.numpy(), out.numpy(), int(t)

    def warmup(self, layer: str | None = None, methods: Sequence[str] = ("gradcam",)) -> None:
        """Trace the passes `methods` need (default: the gradient CAMs) for `layer` now."""
        x = np.zeros((1, *self._size, self._channels), np.float32)
        self._fn("forward")(x)
        if layer is None and self._default_layer is None:   # no spatial layer: pixel methods only
            methods = [m for m in methods if not METHODS[m].needs_layer]
        lay = self._layer(layer) if any(METHODS[m].needs_layer for m in methods) else None
        for m in methods:
            if m in GRADIENT_CAMS or m == "guided-gradcam":
                self._fn("cam", lay)(x, -1)
            elif m in _NEEDS_A:
                self._fn("tap", lay)(x)
            if m in ("gradients", "smoothgrad", "integrated-gradients"):
                self._fn("grad")(x, -1)
            if m in ("guided-backprop", "guided-gradcam"):
                self._fn("guided")(x, -1)

    # -- public API --------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, top: int = 5) -> list[Prediction]:
        """Top classes by probability for a uint8 RGB image."""
        out = self._fn("forward")(tf.constant(self.prepare(image))).numpy()[0]
        p = self.probabilities(out)
        order = np.argsort(-p)[: max(1, int(top))]
        return [Prediction(int(i), self._labels[i], float(p[i])) for i in order]

    def cost(self, methods: Sequence[str], layer: str | None = None, **options) -> dict[str, int]:
        """Model passes each method adds, in order (a pass shared with an earlier method in the
        list counts once), so sum(cost.values()) estimates the whole call."""
        methods = self._methods(methods)
        opts = self._options(options)
        lay = self._layer(layer) if any(METHODS[m].needs_layer for m in methods) else None
        return _plan(self, methods, opts, lay, layer is not None)[0]

    def explain(self, image: np.ndarray, methods: Sequence[str], layer: str | None = None,
                target: int | None = None, *, score: str = "logit", counterfactual: bool = False,
                progress: Callable[[float], None] | None = None, cancel: Callable[[], bool] | None = None,
                **options) -> dict[str, MethodResult]:
        """Heatmaps for `methods` on a uint8 RGB image (target None = top-1 class)."""
        methods = self._methods(methods)
        opts = self._options(options)
        if score not in ("logit", "probability"):
            raise ExplainError(f"score must be 'logit' or 'probability', not {score!r}")
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, (int, np.integer)) \
                    or not 0 <= int(target) < self.num_classes:
                raise ExplainError(f"target must be a class index from 0 to {self.num_classes - 1}")
            target = int(target)
        lay = self._layer(layer) if any(METHODS[m].needs_layer for m in methods) else None
        if "cam" in methods:   # fail before any work is done
            self.cam_layer(layer)
        run = _Run(self, image, lay, layer is not None, target, score, bool(counterfactual), opts,
                   progress, cancel)
        return run.execute(methods)

    # -- validation --------------------------------------------------------------------------------
    def _methods(self, methods) -> list[str]:
        if isinstance(methods, str):
            methods = [methods]
        out = []
        for m in methods:
            if m not in METHODS:
                raise ExplainError(f"unknown method {m!r}; choose from: {', '.join(METHODS)}")
            if m not in out:
                out.append(m)
        if not out:
            raise ExplainError("no method chosen")
        return out

    def _options(self, options: dict) -> dict:
        bad = [k for k in options if k not in OPTIONS]
        if bad:
            raise ExplainError(f"unknown option {bad[0]!r}; options: {', '.join(OPTIONS)}")
        out = {}
        for k, o in OPTIONS.items():
            v = options.get(k, o.default)
            number = float if isinstance(o.default, float) else int if (
                isinstance(o.default, int) or k in ("occlusion_patch", "occlusion_stride")) else None
            if number is not None and v is not None:
                try:
                    v = number(v)
                except (TypeError, ValueError):
                    raise ExplainError(f"option {k} must be a number, not {v!r}") from None
                if v < 0:
                    raise ExplainError(f"option {k} must not be negative")
            out[k] = v
        return out

    def _layer(self, layer: str | None) -> str:
        if layer is None:
            if self._default_layer is None:
                raise LayerError("the model has no layer with a spatial output to explain")
            return self._default_layer
        return self.graph.resolve(layer)

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


def _plan(ex: Explainer, methods: list[str], opts: dict, layer: str | None, layer_given: bool):
    """Per-method pass counts (shared passes counted once) and whether the gradient pass runs
    (then it also supplies the activations)."""
    use_cam = any(m in GRADIENT_CAMS or m == "guided-gradcam" for m in methods)
    H, W = ex.input_size
    need: dict[str, list[tuple[str, int]]] = {}
    for m in methods:
        a_pass = ("cam", 1) if use_cam else ("tap:" + str(layer), 1)
        if m in GRADIENT_CAMS:
            need[m] = [("cam", 1)]
        elif m == "cam":
            cl = _safe_cam_layer(ex, layer if layer_given else None)
            need[m] = [("cam", 1)] if use_cam and cl == layer else [("tap:" + str(cl), 1)]
        elif m in ("activations", "eigencam"):
            need[m] = [a_pass]
        elif m == "scorecam":
            K = int(ex.graph.layers[layer].shape[-1])
            k = K if not opts["scorecam_top_k"] else min(K, int(opts["scorecam_top_k"]))
            need[m] = [a_pass, ("scorecam", k)]
        elif m == "gradients":
            need[m] = [("grad", 1)]
        elif m == "guided-backprop":
            need[m] = [("guided", 1)]
        elif m == "guided-gradcam":
            need[m] = [("guided", 1), ("cam", 1)]
        elif m == "smoothgrad":
            need[m] = [("smoothgrad", int(opts["smoothgrad_samples"]) + 1)]
        elif m == "integrated-gradients":
            need[m] = [("ig", int(opts["ig_steps"]) + 1)]
        elif m == "occlusion":
            patch, stride = _occlusion_geometry(ex.input_size, opts)
            need[m] = [("occlusion", len(OcclusionMasks((H, W), patch, stride)) + 1)]
        elif m in _BUDGETS:   # the clean image's forward (target, score), then the budget
            need[m] = [("forward", 1), (m, int(opts[_BUDGETS[m]]))]
    done, cost = set(), {}
    for m in methods:
        cost[m] = sum(u for k, u in need[m] if k not in done)
        done |= {k for k, _ in need[m]}
    return cost, use_cam


def _safe_cam_layer(ex, layer):
    try:
        return ex.cam_layer(layer)
    except MethodNotApplicable:
        return None


def _occlusion_geometry(size, opts) -> tuple[int, int]:
    patch = opts["occlusion_patch"] or max(1, round(min(size) / 7))
    stride = opts["occlusion_stride"] or max(1, int(patch) // 2)
    if int(patch) < 1 or int(stride) < 1 or int(patch) > min(size):
        raise ExplainError(f"occlusion patch must be 1..{min(size)} and stride >= 1")
    return int(patch), int(stride)


def _fill(pixels: np.ndarray, fill, rng: np.random.Generator, blur_sigma: float) -> np.ndarray:
    """A baseline/fill image in pixel space (0..255) of the same shape as `pixels`."""
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return np.full_like(pixels, float(fill))
    if fill == "black":
        return np.zeros_like(pixels)
    if fill == "grey" or fill == "gray":
        return np.full_like(pixels, 128.0)
    if fill == "mean":
        return np.broadcast_to(pixels.mean(axis=(0, 1)), pixels.shape).astype(np.float32)
    if fill == "blur":
        return cv2.GaussianBlur(pixels, (0, 0), sigmaX=max(1.0, blur_sigma))
    if fill == "noise":
        return rng.uniform(0, 255, pixels.shape).astype(np.float32)
    raise ExplainError(f"unknown fill/baseline {fill!r}; use black, grey, mean, blur or noise")


class _Run:
    """One explain() call: shared passes computed lazily once, progress and cancel."""

    def __init__(self, ex: Explainer, image, layer, layer_given, target, score, counterfactual, opts,
                 progress, cancel):
        self.ex, self.layer, self.target, self.score = ex, layer, target, score
        self.layer_given, self.cam_layer = layer_given, None
        self.cf, self.opts = counterfactual, opts
        self.pix = ex.pixels(image)   # validates the image first
        self.out_hw = tuple(image.shape[:2])
        self.x = ex.to_input(self.pix[None])
        self._progress, self._cancel = progress, cancel
        self._done, self._total = 0.0, 1
        self._cache: dict = {}
        self._cam_weights: dict = {}   # layer -> its CAM head's kernel, from the pass that ran
        self._rng = None
        self.outputs = None   # the clean image's pre-activation outputs (classes,)

    # -- bookkeeping -------------------------------------------------------------------------------
    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(int(self.opts["seed"]))
        return self._rng

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

    def t(self):
        return tf.constant(-1 if self.target is None else self.target, tf.int32)

    def method_rng(self, method: str) -> np.random.Generator:
        """A generator of its own per method, so a method's result depends on the seed only, not
        on which other methods ran before it in the same call."""
        return np.random.default_rng([int(self.opts["seed"]), zlib.crc32(method.encode())])

    # -- shared passes -----------------------------------------------------------------------------
    def cam_pass(self, layer):
        key = ("cam", layer)
        if key not in self._cache:
            self.check()
            A, G, out, t, W = self.ex._fn("cam", layer, self.score)(tf.constant(self.x), self.t())
            self._got(int(t), out.numpy()[0])
            self._cache[key] = (A.numpy()[0], G.numpy()[0])
            self._cam_weights[layer] = W
            self.advance(1)
        return self._cache[key]

    def acts(self, layer):
        if self.use_cam and layer == self.layer:
            return self.cam_pass(layer)[0]
        key = ("tap", layer)
        if key not in self._cache:
            self.check()
            A, out, W = self.ex._fn("tap", layer)(tf.constant(self.x))
            self._cam_weights[layer] = W
            out = out.numpy()
            self._got(int(np.argmax(out[0])), out[0])
            self._cache[key] = A.numpy()[0]
            self.advance(1)
        return self._cache[key]

    def input_grad(self, guided=False):
        key = ("guided" if guided else "grad",)
        if key not in self._cache:
            self.check()
            g, out, t = self.ex.input_gradients(self.x, self.target, self.score, guided=guided)
            self._got(t, out[0])
            self._cache[key] = g[0]
            self.advance(1)
        return self._cache[key]

    def batched_grads(self, inputs_for: Callable[[int, int], np.ndarray], n: int):
        """Gradients and outputs for n generated inputs (row 0 must be the clean image so the
        top-1 target is resolved on it)."""
        progress = self.sub_progress(n)

        def compute(start, stop):
            g, out, t = self.ex.input_gradients(inputs_for(start, stop), self.target, self.score)
            if start == 0:
                self._got(t, out[0])
            return g, out
        parts = run_batches(n, compute, batch_size=self.opts["batch_size"], progress=progress,
                            cancel=self._cancel)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def clean_score(self):
        if self.outputs is None:
            out = self.ex._fn("forward")(tf.constant(self.x)).numpy()
            self._got(int(np.argmax(out[0])), out[0])
        return float(self.ex.scores(self.outputs[None], self.target, self.score)[0])

    def masked_scores(self, baseline: np.ndarray, masks) -> np.ndarray:
        """Target scores of the image blended with a baseline (model input, (1, H, W, C)) by each mask,
        through the perturbation core; one progress unit per mask. The target must be resolved."""
        out = self.ex.masked_outputs(self.x, baseline, masks, batch_size=self.opts["batch_size"],
                                     progress=self.sub_progress(len(masks)), cancel=self._cancel)
        return self.ex.scores(out, self.target, self.score)

    # -- methods -----------------------------------------------------------------------------------
    def m_gradient_cam(self, m):
        A, G = self.cam_pass(self.layer)
        fn = {"gradcam": F.gradcam, "gradcam-guided": F.gradcam_guided, "gradcam++": F.gradcam_pp,
              "xgradcam": F.xgradcam, "layercam": F.layercam, "hirescam": F.hirescam}[m]
        return fn(A, -G if self.cf else G), "relu", {}

    def m_cam(self):
        layer = self.cam_layer = self.ex.cam_layer(self.layer if self.layer_given else None)
        A = self.acts(layer)
        w = self._cam_weights[layer].numpy()[:, self.target]
        return F.cam(A, -w if self.cf else w), "relu", {}

    def m_activations(self):
        A = self.acts(self.layer)
        k = max(1, int(self.opts["activations_top_k"]))
        order = np.argsort(-A.mean(axis=(0, 1)))[:k]
        extra = {"maps": np.ascontiguousarray(np.moveaxis(A[..., order], -1, 0), np.float32),
                 "channels": [int(i) for i in order]}
        return A.mean(axis=-1).astype(np.float32), "minmax", extra

    def m_eigencam(self):
        return F.eigencam(self.acts(self.layer)), "minmax", {}

    def m_scorecam(self):
        A = self.acts(self.layer)
        means = A.mean(axis=(0, 1))
        k = int(self.opts["scorecam_top_k"]) or A.shape[-1]
        order = np.argsort(-means)[:k]
        lo, hi = A.min(axis=(0, 1)), A.max(axis=(0, 1))
        order = np.array([c for c in order if hi[c] - lo[c] > 1e-12 * max(1.0, abs(hi[c]))], int)
        planned = min(k, A.shape[-1])
        if len(order) == 0:
            self.advance(planned)
            return np.zeros(A.shape[:2], np.float32), "relu", {"channels": []}
        masks = np.moveaxis((A[..., order] - lo[order]) / (hi[order] - lo[order]), -1, 0)
        out = self.ex.masked_outputs(self.x, np.zeros_like(self.x), masks.astype(np.float32),
                                     batch_size=self.opts["batch_size"],
                                     progress=self.sub_progress(planned), cancel=self._cancel)
        scores = self.ex.scores(out, self.target, self.score)
        return F.scorecam(A[..., order], scores), "relu", {"channels": [int(c) for c in order]}

    def m_occlusion(self):
        patch, stride = _occlusion_geometry(self.ex.input_size, self.opts)
        masks = OcclusionMasks(self.ex.input_size, patch, stride)
        fill = self.opts["occlusion_fill"]
        base = self.ex.to_input(_fill(self.pix, fill, self.rng, patch / 2)[None])
        s0 = self.clean_score()
        out = self.ex.masked_outputs(self.x, base, masks, batch_size=self.opts["batch_size"],
                                     progress=self.sub_progress(len(masks) + 1), cancel=self._cancel)
        drops = s0 - self.ex.scores(out, self.target, self.score)
        return masks.combine(drops), "relu", {"patch": patch, "stride": stride, "fill": fill}

    def m_gradients(self):
        return F.saliency(self.input_grad()), "abs", {}

    def _no_relu(self) -> dict:
        if self.ex.graph.relu_count:
            return {}
        return {"warnings": ["the model has no ReLU, so guided backprop equals plain gradients here"]}

    def m_guided_backprop(self):
        return F.saliency(self.input_grad(guided=True)), "abs", self._no_relu()

    def m_guided_gradcam(self):
        gb = F.saliency(self.input_grad(guided=True))
        A, G = self.cam_pass(self.layer)
        cam, _ = F.normalize(F.gradcam(A, -G if self.cf else G), self.ex.input_size, "relu")
        return gb * cam, "abs", self._no_relu()

    def m_smoothgrad(self):
        n = int(self.opts["smoothgrad_samples"])
        if n < 1:
            raise ExplainError("smoothgrad_samples must be at least 1")
        sigma = float(self.opts["smoothgrad_noise"]) * float(self.x.max() - self.x.min() or 1.0)
        noise = self.rng.normal(0, sigma, (n,) + self.x.shape[1:]).astype(np.float32)

        def inputs(start, stop):
            rows = [self.x[0] if i == 0 else self.x[0] + noise[i - 1] for i in range(start, stop)]
            return np.stack(rows)
        grads, _ = self.batched_grads(inputs, n + 1)
        return F.saliency(grads[1:].mean(axis=0)), "abs", {}

    def m_integrated_gradients(self):
        steps = int(self.opts["ig_steps"])
        if steps < 1:
            raise ExplainError("ig_steps must be at least 1")
        base = self.ex.to_input(_fill(self.pix, self.opts["ig_baseline"], self.rng,
                                      min(self.ex.input_size) / 20)[None])[0]
        alphas = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)   # alpha 1 (clean image) first
        delta = self.x[0] - base

        def inputs(start, stop):
            return base[None] + alphas[start:stop, None, None, None] * delta[None]
        grads, out = self.batched_grads(inputs, steps + 1)
        w = np.full(steps + 1, 1.0 / steps, np.float32)
        w[0] = w[-1] = 0.5 / steps   # trapezoid rule
        attr = delta * np.tensordot(w, grads, axes=1)
        s = self.ex.scores(out, self.target, self.score)
        gap = s[0] - s[-1]
        err = abs(float(attr.sum()) - gap) / max(abs(gap), 1e-6)
        warnings = []
        if err > 0.05:
            warnings.append(f"integrated gradients miss the score difference by {err:.0%} "
                            "(completeness); raise ig_steps")
        return F.attribution_map(attr), "abs", {"completeness_error": err, "warnings": warnings}

    # -- black-box methods (formulas in explain.lime / shapley / rise / expected_gradients) --------
    def m_lime(self):
        o, rng = self.opts, self.method_rng("lime")
        lime.check_sign(o["lime_sign"])   # before any model call
        s0 = self.clean_score()
        seg, how = lime.superpixels(self.pix, o["lime_segments"], o["lime_superpixels"])
        n_seg = int(seg.max()) + 1
        fill = lime.segment_means(self.pix, seg) if o["lime_fill"] == "mean" else \
            _fill(self.pix, o["lime_fill"], rng, np.sqrt(seg.size / n_seg) / 2)
        Z = lime.patterns(rng, n_seg, o["lime_samples"])
        y = self.masked_scores(self.ex.to_input(fill[None]), lime.SegmentMasks(seg, Z))
        fit = lime.ridge(Z, y, lime.kernel_weights(Z, o["lime_kernel_width"]))
        raw, mode, extra = lime.result(seg, fit, s0, o["lime_sign"], int(o["lime_top_k"]), how)
        extra["warnings"] = lime.warnings(fit, s0, y, how)
        return raw, mode, extra

    def m_shap(self):
        s0 = self.clean_score()
        fill = _fill(self.pix, self.opts["shap_fill"], self.method_rng("shap"), min(self.ex.input_size) / 6)
        baseline = self.ex.to_input(fill[None])
        values, base = shapley.owen_values(self.ex.input_size, lambda m: self.masked_scores(baseline, m),
                                           int(self.opts["shap_evals"]), self.opts["batch_size"],
                                           int(self.opts["seed"]))
        err = abs(float(values.sum()) - (s0 - base)) / max(abs(s0 - base), 1e-6)
        return values, "relu", {"base_score": base, "score": s0, "efficiency_error": err}

    def m_rise(self):
        o, rng = self.opts, self.method_rng("rise")
        self.clean_score()
        masks = rise.RiseMasks(self.ex.input_size, int(o["rise_masks"]), int(o["rise_cells"]), o["rise_p"],
                               rng)
        fill = self.ex.to_input(_fill(self.pix, o["rise_fill"], rng, max(masks.cell) / 2)[None])
        return masks.combine(self.masked_scores(fill, masks)), "relu", \
            {"masks": len(masks), "cells": int(o["rise_cells"]), "p": float(o["rise_p"])}

    def m_expected_gradients(self):
        o, n = self.opts, int(self.opts["eg_samples"])
        self.clean_score()
        images = EG.background(o["eg_background"], self.ex.input_size)
        bg = self.ex.to_input(np.stack([self.ex.pixels(im) for im in images]))
        sigma = float(o["eg_noise"]) * float(self.x.max() - self.x.min() or 1.0)
        attr = EG.attributions(self.x[0], bg, n, sigma, self.method_rng("expected-gradients"),
                               lambda xb: self.ex.input_gradients(xb, self.target, self.score)[0],
                               batch_size=o["batch_size"], progress=self.sub_progress(n), cancel=self._cancel)
        return F.attribution_map(attr), "abs", {"samples": n, "backgrounds": len(bg)}

    # -- driver ------------------------------------------------------------------------------------
    def execute(self, methods: list[str]) -> dict[str, MethodResult]:
        cost, self.use_cam = _plan(self.ex, methods, self.opts, self.layer, self.layer_given)
        self._total = max(1, sum(cost.values()))
        self._report_start()
        results = {}
        # One block for all heatmaps: NumPy backs blocks >= 4 MiB with huge pages, so filling it
        # takes a tenth of the page faults of one fresh array per method (~0.35 ms each at 640x480).
        heatmaps = np.empty((len(methods), *self.out_hw), np.float32)
        for i, m in enumerate(methods):
            self.check()
            t0 = time.perf_counter()
            raw, mode, extra = self._compute(m)
            warnings = list(extra.pop("warnings", []))
            heatmap, w2 = F.normalize(raw, self.out_hw, mode, out=heatmaps[i])
            warnings += w2 + self._score_warnings(m)
            layer = self.cam_layer if m == "cam" else \
                (self.layer if METHODS[m].needs_layer else None)
            results[m] = MethodResult(m, heatmap, np.asarray(raw, np.float32), time.perf_counter() - t0,
                                      int(self.target), layer, warnings, extra)
        self._done = self._total
        self._report()
        return results

    def _report_start(self):
        if self._progress is not None:
            self._progress(0.0)

    def _compute(self, m):
        if m in GRADIENT_CAMS:
            return self.m_gradient_cam(m)
        return getattr(self, "m_" + m.replace("-", "_"))()

    def _score_warnings(self, m) -> list[str]:
        w = []
        if self.cf and m not in GRADIENT_CAMS + ("cam", "guided-gradcam"):
            w.append("counterfactual applies to the CAM family only; ignored here")
        if self.score == "probability" and m not in _SCORELESS and self.outputs is not None:
            p = float(self.ex.probabilities(self.outputs[None])[0, self.target])
            if p > 0.999:
                w.append(f"the target's probability is {p:.4f}: the softmax is saturated, so its "
                         "gradients and score changes are near zero; use the logit score")
        return w

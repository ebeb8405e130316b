"""Numbers for judging explanations: faithfulness, localisation and the sanity check.

- Deletion / insertion (Petsiuk, Das & Saenko 2018, "RISE", BMVC): remove (or reveal) pixels in
  order of heatmap importance in `steps` equal steps and score the target class after each; the
  area under the curve (trapezoid rule over the share of pixels, 0..1) is the number. Deletion:
  lower is better; insertion: higher is better. All steps of all methods are batched model calls
  through the perturbation core (explain.perturb via Explainer.masked_outputs). The paper fades
  to black (deletion) and starts from a blurred image (insertion); the default here is mid-grey
  for both, because a black image is itself a confident prediction for many models (the bundled
  `vehicles` calls it a truck with p = 1.0, which makes every truck's deletion curve stay high).
- Pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop", ECCV):
  does the heatmap's maximum fall inside the object mask.
- Energy-based pointing game (Wang et al. 2020, "Score-CAM", CVPR workshops): the share of the
  heatmap's mass inside the mask; chance is the mask's area share.
- Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity checks
  for saliency maps", NeurIPS): re-initialise the weights from the top layer down, one layer
  (block) more at each step, and compare each method's map with the trained model's by Spearman
  rank correlation and SSIM (Wang et al. 2004). A map that stays similar explains the image,
  not the model.

NumPy/TensorFlow/Keras only (never Dash): the app's Compare view and `python -m explain.evaluate`
both call these functions.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from explain.errors import ExplainError

#: Baselines for deletion / insertion (what a removed pixel becomes).
BASELINES = ("blur", "grey", "black", "mean")
DEFAULT_BASELINE = "grey"
#: Sanity-check verdict: a map whose Spearman correlation with the trained model's map stays at
#: least this high on average over the randomisation cascade does not depend enough on the model.
SANITY_THRESHOLD = 0.5

CustomMethod = Callable[[object, np.ndarray, int], np.ndarray]


# -- deletion / insertion ----------------------------------------------------------------------

@dataclass
class Curve:
    """Score of the target class against the share of pixels removed (deletion) or revealed
    (insertion); `auc` is the trapezoid area over fractions 0..1."""

    fractions: np.ndarray
    scores: np.ndarray
    auc: float


@dataclass
class Faithfulness:
    method: str
    target: int
    deletion: Curve
    insertion: Curve


def pixel_order(heatmap: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most important first. Ties are broken at random (seeded), so a
    binary heatmap does not remove its pixels in raster order."""
    h = np.asarray(heatmap, np.float64).ravel()
    key = np.random.default_rng(seed).random(h.size)
    return np.lexsort((key, -np.nan_to_num(h, nan=-np.inf)))


class StepMasks:
    """The k+1 deletion (or insertion) masks of one heatmap, built lazily per batch: mask i keeps
    (deletion) or reveals (insertion) all but / only the round(i/k * N) most important pixels."""

    def __init__(self, heatmap: np.ndarray, steps: int, insertion: bool, seed: int = 0):
        self.shape = heatmap.shape
        rank = np.empty(heatmap.size, np.int64)
        rank[pixel_order(heatmap, seed)] = np.arange(heatmap.size)
        self.rank = rank.reshape(heatmap.shape)
        self.counts = np.round(np.linspace(0, heatmap.size, steps + 1)).astype(np.int64)
        self.insertion = insertion

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, index: slice) -> np.ndarray:
        n = self.counts[index][:, None, None]
        hit = self.rank[None] < n
        return (hit if self.insertion else ~hit).astype(np.float32)


class _Chain:
    """Several mask sources as one (so all methods share the same batches)."""

    def __init__(self, sources: Sequence[StepMasks]):
        self.sources = list(sources)
        self.starts = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, _ = index.indices(len(self))
        parts = []
        for s, a in zip(self.sources, self.starts):
            lo, hi = max(start, a), min(stop, a + len(s))
            if lo < hi:
                parts.append(s[lo - a:hi - a])
        return np.concatenate(parts)


def baseline_pixels(pixels: np.ndarray, baseline: str) -> np.ndarray:
    """The image a removed pixel turns into (pixel space 0..255, same shape as `pixels`)."""
    from explain.inputs import fill

    if baseline not in BASELINES:
        raise ExplainError(f"unknown baseline {baseline!r}; use one of: {', '.join(BASELINES)}")
    # Blur strong enough to remove object detail (RISE blurs with an 11-pixel Gaussian at 224).
    sigma = max(1.0, min(pixels.shape[:2]) / 20)
    return np.asarray(fill(pixels, baseline, np.random.default_rng(0), sigma), np.float32)


def _at_size(a: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if a.shape[:2] == tuple(size):
        return a
    H, W = size
    shrink = a.shape[0] > H or a.shape[1] > W
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.resize(a, (W, H), interpolation=interp)


def deletion_insertion(explainer, image: np.ndarray, heatmaps: Mapping[str, np.ndarray],
                       target: int | None = None, *, steps: int = 20,
                       baseline: str = DEFAULT_BASELINE, score: str = "probability",
                       batch_size: int = 16, seed: int = 0,
                       progress: Callable[[float], None] | None = None,
                       cancel: Callable[[], bool] | None = None) -> dict[str, Faithfulness]:
    """Deletion and insertion curves of every heatmap (method -> (h, w) map of any size) for a
    uint8 RGB image, in batched masked forward passes at the model's input size.

    target None = the model's top-1 class. baseline: what removed pixels become (and what
    insertion starts from): "grey" (default), "blur", "black" or "mean". score "probability"
    (the paper) or "logit". progress/cancel as in Explainer.explain (Cancelled between batches).
    """
    steps = int(steps)
    if steps < 1:
        raise ExplainError("steps must be at least 1")
    if score not in ("logit", "probability"):
        raise ExplainError(f"score must be 'logit' or 'probability', not {score!r}")
    if not heatmaps:
        raise ExplainError("no heatmap to evaluate")
    pix = explainer.pixels(image)
    size = explainer.input_size
    if target is None:
        target = explainer.predict(image, top=1)[0].index
    target = int(target)
    x = explainer.to_input(pix[None])
    base = explainer.to_input(baseline_pixels(pix, baseline)[None])
    names = list(heatmaps)
    maps = [_at_size(heatmaps[m], size) for m in names]
    # One batched run: every method's deletion steps, then every method's insertion steps.
    chain = _Chain([StepMasks(h, steps, insertion, seed) for insertion in (False, True) for h in maps])
    out = explainer.masked_outputs(x, base, chain, batch_size=batch_size, progress=progress,
                                   cancel=cancel)
    scores = explainer.scores(out, target, score).reshape(2, len(names), steps + 1)
    fractions = np.linspace(0.0, 1.0, steps + 1)

    def curve(values):
        return Curve(fractions, values, float(np.trapezoid(values, fractions)))
    return {m: Faithfulness(m, target, curve(scores[0, i]), curve(scores[1, i]))
            for i, m in enumerate(names)}


#: Random maps for the faithfulness baseline: how many, their seed, and their grid (cells per side).
RANDOM_MAPS = 3
RANDOM_SEED = 1234
RANDOM_CELLS = 8


def random_maps(size: tuple[int, int], n: int = RANDOM_MAPS, seed: int = RANDOM_SEED,
                cells: int = RANDOM_CELLS) -> list[np.ndarray]:
    """`n` seeded random maps at `size` (H, W): uniform noise on a `cells` x `cells` grid, resized
    bilinearly. Smooth like a CAM rather than per-pixel noise, because removing scattered single
    pixels wrecks an image far faster than removing blobs, which would flatter every blob-shaped map."""
    rng = np.random.default_rng(seed)
    H, W = size
    return [cv2.resize(rng.random((cells, cells)).astype(np.float32), (W, H),
                       interpolation=cv2.INTER_LINEAR) for _ in range(int(n))]


@dataclass
class RandomBaseline:
    """Deletion / insertion of the random maps on the same image: mean AUCs, their standard
    deviation, the per-map margins' spread (explain.verdict) and the mean curves."""

    deletion_auc: float
    insertion_auc: float
    deletion_sd: float
    insertion_sd: float
    spread: float
    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    n: int


def faithfulness(explainer, image: np.ndarray, heatmaps: Mapping[str, np.ndarray],
                 target: int | None = None, *, n_random: int = RANDOM_MAPS, seed: int = RANDOM_SEED,
                 **kwargs) -> tuple[dict[str, Faithfulness], RandomBaseline | None]:
    """`deletion_insertion` of the heatmaps and of `n_random` random maps, in the same batched
    passes; the random maps come back summarised as a RandomBaseline (None when n_random is 0)."""
    keys = [f"\0random-{i}" for i in range(int(n_random))]
    maps = dict(heatmaps)
    maps.update(zip(keys, random_maps(explainer.input_size, len(keys), seed)))
    faith = deletion_insertion(explainer, image, maps, target, **kwargs)
    rand = [faith.pop(k) for k in keys]
    if not rand:
        return faith, None
    dels = np.array([f.deletion.auc for f in rand])
    ins = np.array([f.insertion.auc for f in rand])
    sd = (lambda v: float(v.std(ddof=1)) if v.size > 1 else 0.0)
    return faith, RandomBaseline(
        float(dels.mean()), float(ins.mean()), sd(dels), sd(ins), sd((ins - dels) / 2),
        rand[0].deletion.fractions, np.mean([f.deletion.scores for f in rand], axis=0),
        np.mean([f.insertion.scores for f in rand], axis=0), len(rand))


# -- localisation --------------------------------------------------------------------------------

def _mask_like(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask).astype(bool)
    if m.shape != tuple(shape):
        m = _at_size(m.astype(np.uint8), shape, nearest=True) > 0
    return m


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> float:
    """Pointing game (Zhang et al. 2016): 1.0 when the heatmap's maximum lies inside the mask
    (dilated by `tolerance` pixels; the paper allows 15 at 224 px), else 0.0. When several
    pixels share the maximum, the share of them inside the mask (a flat map scores chance)."""
    h = np.asarray(heatmap, np.float64)
    m = _mask_like(mask, h.shape)
    if tolerance > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1,) * 2)
        m = cv2.dilate(m.astype(np.uint8), k) > 0
    if not np.isfinite(h).any():
        return float("nan")
    top = h >= np.nanmax(h)
    return float(m[top].mean())


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Energy-based pointing game (Wang et al. 2020): sum of the (non-negative) heatmap inside
    the mask over its total. Chance, for a map unrelated to the object, is the mask's area
    share (see `mask_fraction`). NaN for an all-zero map (it points nowhere)."""
    h = np.clip(np.nan_to_num(np.asarray(heatmap, np.float64)), 0, None)
    m = _mask_like(mask, h.shape)
    total = h.sum()
    return float(h[m].sum() / total) if total > 0 else float("nan")


#: The most boxes one localisation takes (a few objects, not a painting).
MAX_BOXES = 20


def clip_boxes(boxes, shape: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """Boxes (x0, y0, x1, y1) in pixel coordinates of an image of `shape` (x to the right, y down;
    corners in any order) as (left, top, right, bottom) clipped to the image; boxes left with no
    area are dropped. Raises ExplainError for anything but finite numbers, or too many boxes."""
    H, W = int(shape[0]), int(shape[1])
    try:
        arr = np.asarray(list(boxes), dtype=np.float64)
        arr = arr.reshape(-1, 4) if arr.size or arr.ndim != 1 else np.zeros((0, 4))
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError
    except (TypeError, ValueError):
        raise ExplainError("a box is four numbers: x0, y0, x1, y1") from None
    if not np.isfinite(arr).all():
        raise ExplainError("a box's corners must be finite numbers")
    if len(arr) > MAX_BOXES:
        raise ExplainError(f"at most {MAX_BOXES} boxes, not {len(arr)}")
    out = []
    for x0, y0, x1, y1 in arr:
        (x0, x1), (y0, y1) = np.clip(sorted((x0, x1)), 0, W), np.clip(sorted((y0, y1)), 0, H)
        if x1 > x0 and y1 > y0:
            out.append((float(x0), float(y0), float(x1), float(y1)))
    return out


def box_mask(boxes, shape: tuple[int, int]) -> np.ndarray:
    """The bool (H, W) mask of one or more boxes (see clip_boxes): a pixel is inside when its
    centre is. Raises ExplainError as clip_boxes does, and when the boxes cover no pixel."""
    mask = np.zeros((int(shape[0]), int(shape[1])), bool)
    for x0, y0, x1, y1 in clip_boxes(boxes, shape):
        c0, c1 = (int(np.ceil(v - 0.5)) for v in (x0, x1))
        r0, r1 = (int(np.ceil(v - 0.5)) for v in (y0, y1))
        mask[r0:r1, c0:c1] = True
    if not mask.any():
        raise ExplainError("the boxes cover no pixel of the image: draw them on the picture")
    return mask


def mask_fraction(mask: np.ndarray) -> float:
    """The mask's share of the image: what a random heatmap scores on both localisation games."""
    return float(np.asarray(mask, bool).mean())


# -- similarity ----------------------------------------------------------------------------------

def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (Pearson correlation of their ranks, ties averaged).
    A constant map has no ranking: 1.0 if both are constant, 0.0 if only one is."""
    from scipy.stats import rankdata

    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    flat_a, flat_b = np.ptp(a) == 0, np.ptp(b) == 0
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b else 0.0
    ra, rb = rankdata(a), rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) of two maps scaled to [0, 1] (scikit-image,
    7x7 uniform window, or the largest odd window that fits)."""
    from skimage.metrics import structural_similarity

    a, b = _unit(a), _unit(b)
    win = min(7, *a.shape)
    win -= 1 - win % 2
    if win < 3:
        return float(np.allclose(a, b))
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(np.asarray(a, np.float64))
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


# -- sanity check ----------------------------------------------------------------------------------

@dataclass
class SanityResult:
    """One method's maps against the trained model's as the weights are randomised top down.

    steps[i] names the layers randomised so far (the i-th cascade step adds a layer or block);
    spearman[i] / ssim[i] compare that step's map with the trained model's map. `score` is the
    Spearman correlation averaged over the cascade (the area under Adebayo et al.'s curve,
    scaled to 0..1 steps): judging only the fully random model would pass nearly every method,
    because randomising the first convolution changes any map, while the paper's finding is
    about maps that survive the randomisation of the top layers (guided backprop, and the
    class-agnostic maps, which do not change at all when the head is randomised). `passed` is
    score < threshold; None when the original map is blank (nothing to compare)."""

    method: str
    steps: list[str]
    spearman: list[float]
    ssim: list[float]
    score: float
    passed: bool | None
    message: str
    original: np.ndarray = field(repr=False)
    randomised: np.ndarray = field(repr=False)
    threshold: float = SANITY_THRESHOLD
    #: per step, the deepest layer randomised so far (a short axis label: "down to conv2")
    reached: list[str] = field(default_factory=list)


class _Cascade:
    """A private copy of an explainer's model (so the shared one is never touched) with its own
    Explainer. Randomising assigns seeded re-initialised values to the copy's variables, resetting
    assigns the trained model's: the copy's compiled passes see both without being traced again,
    and nothing but the copy is held in memory."""

    def __init__(self, explainer, seed: int):
        import keras

        from explain.engine import Explainer

        model = explainer.model
        self.model = keras.models.clone_model(model)
        self.model.set_weights(model.get_weights())
        trained = {id(c): o for c, o in zip(self.model.weights, model.weights)}
        self.explainer = Explainer(self.model, explainer.preprocess,
                                   explainer.labels, explainer.input_size,
                                   explainer.default_layer)
        self.lock = threading.Lock()
        # Weighted layers in execution order, grouped as "a layer with a kernel + the weight-only
        # layers after it" (conv + its batch norm), then reversed: the cascade goes top down.
        groups: list[list] = []
        for path, info in self.explainer.graph.layers.items():
            if info.container or not info.layer.weights:
                continue
            if any(len(v.shape) >= 2 for v in info.layer.weights) or not groups:
                groups.append([])
            groups[-1].append((path, info.layer))
        self.groups = groups[::-1]
        # (variable, its layer, its seed, the trained model's variable), top layer first
        self.variables = [(v, layer, seed + k, trained[id(v)]) for k, (v, layer) in enumerate(
            (v, layer) for g in self.groups for _, layer in g for v in layer.weights)]
        self._index = {id(v): i for i, (v, *_) in enumerate(self.variables)}

    def reset(self) -> None:
        for v, _, _, original in self.variables:
            v.assign(original.value)

    def randomise(self, group: list) -> None:
        for _, layer in group:
            for v in layer.weights:
                _, _, var_seed, _ = self.variables[self._index[id(v)]]
                v.assign(_reinit(layer, v, var_seed))


def _reinit(layer, variable, seed: int) -> np.ndarray:
    """Fresh values for a variable from its layer's own initializer (seeded); for variables
    without one, Glorot-uniform kernels, zero biases/means and unit scales/variances."""
    shape, dtype = tuple(variable.shape), str(variable.dtype)
    name = variable.name
    attr = {"depthwise_kernel": "depthwise_initializer",
            "pointwise_kernel": "pointwise_initializer"}.get(name, name + "_initializer")
    init = getattr(layer, attr, None)
    if callable(init) and hasattr(init, "get_config"):
        cfg = init.get_config()
        if "seed" in cfg:
            cfg["seed"] = seed
            init = type(init).from_config(cfg)
        return np.asarray(init(shape, dtype=dtype))
    rng = np.random.default_rng(seed)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[:-1]))
        fan_out = int(np.prod(shape[:-2])) * shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(dtype)
    if any(s in name for s in ("gamma", "variance", "scale")):
        return np.ones(shape, dtype)
    return np.zeros(shape, dtype)


_CASCADES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CASCADES_LOCK = threading.Lock()


def _cascade_for(explainer, seed: int) -> _Cascade:
    with _CASCADES_LOCK:
        entry = _CASCADES.get(explainer)
        if entry is None or entry[0] != seed:
            entry = _CASCADES[explainer] = (seed, _Cascade(explainer, seed))
        return entry[1]


def _merge(groups: list, max_steps: int | None) -> list[list]:
    if not max_steps or len(groups) <= max_steps:
        return groups
    bounds = np.round(np.linspace(0, len(groups), int(max_steps) + 1)).astype(int)
    return [sum(groups[a:b], []) for a, b in zip(bounds[:-1], bounds[1:])]


def sanity_check(explainer, image: np.ndarray, methods: Sequence[str] = (),
                 layer: str | None = None, target: int | None = None, *,
                 custom: Mapping[str, CustomMethod] | None = None,
                 max_steps: int | None = None, threshold: float = SANITY_THRESHOLD,
                 seed: int = 0, progress: Callable[[float], None] | None = None,
                 cancel: Callable[[], bool] | None = None,
                 trained: Mapping[str, np.ndarray] | None = None,
                 **options) -> dict[str, SanityResult]:
    """Cascading model-parameter randomisation (Adebayo et al. 2018) for `methods` (ids of
    Explainer.explain) and `custom` ({name: fn(explainer, image, target) -> (h, w) map}, e.g. a
    baseline that ignores the model). The model is copied once per explainer and cached; the
    trained model is never modified. max_steps merges the layers into at most that many steps
    (top first); target None = the trained model's top-1, kept for every step. `trained`: the
    methods' heatmaps on the trained model when the caller has them already (the app's grid
    has), so the cascade's first run is skipped."""
    custom = dict(custom or {})
    methods = list(methods)
    if not methods and not custom:
        raise ExplainError("no method chosen")
    if target is None:
        target = explainer.predict(image, top=1)[0].index
    target = int(target)
    cascade = _cascade_for(explainer, seed)
    groups = _merge(cascade.groups, max_steps)
    size = explainer.input_size
    n_runs = len(groups) + 1

    def maps(run: int) -> dict[str, np.ndarray]:
        def sub(frac):
            if progress is not None:
                progress((run + frac) / n_runs)
        out = {}
        if run == 0 and trained is not None and methods and all(m in trained for m in methods):
            out.update({m: trained[m] for m in methods})
        elif methods:
            res = cascade.explainer.explain(image, methods, layer, target, progress=sub,
                                            cancel=cancel, **options)
            out.update({m: r.heatmap for m, r in res.items()})
        for name, fn in custom.items():
            out[name] = np.asarray(fn(cascade.explainer, image, target), np.float32)
        sub(1.0)
        return {m: _at_size(h, size) for m, h in out.items()}

    with cascade.lock:
        cascade.reset()
        try:
            first = maps(0)
            names = list(first)
            rho = {m: [] for m in names}
            sim = {m: [] for m in names}
            labels, reached, current = [], [], first
            order = {p: i for i, p in enumerate(cascade.explainer.graph.layers)}
            for i, group in enumerate(groups):
                cascade.randomise(group)
                labels.append(_label(group))
                reached.append(min((p for p, _ in group), key=lambda p: order.get(p, 0)))
                current = maps(i + 1)
                for m in names:
                    rho[m].append(spearman(first[m], current[m]))
                    sim[m].append(ssim(first[m], current[m]))
        finally:
            cascade.reset()

    results = {}
    for m in names:
        blank = np.ptp(first[m]) == 0
        score = float(np.mean(rho[m])) if rho[m] else float("nan")
        passed = None if blank or not rho[m] else bool(score < threshold)
        results[m] = SanityResult(m, labels, rho[m], sim[m], score, passed,
                                  _verdict(passed, score, threshold), first[m], current[m],
                                  threshold, reached)
    return results


def _label(group: list) -> str:
    paths = [p for p, _ in group]
    return " + ".join(paths) if len(paths) <= 3 else f"{paths[0]} … {paths[-1]} ({len(paths)} layers)"


def _verdict(passed: bool | None, score: float, threshold: float) -> str:
    if passed is None:
        return "The map is blank for the trained model; nothing to compare."
    if passed:
        return (f"Passes: the map changes as the weights are randomised (mean Spearman {score:.2f} "
                f"< {threshold:.2f}), so it depends on what the model learnt.")
    return (f"Fails: the map stays similar as the weights are randomised (mean Spearman "
            f"{score:.2f} >= {threshold:.2f}); it shows the image more than the model.")


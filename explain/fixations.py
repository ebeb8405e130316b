"""CNN Fixations (Mopuri, Garg & Babu, IEEE TIP 2019): backtrack the discriminative neurons from
the class node to the image, layer by layer, with activations x weights, then blur the image-space
points ("fixations") into a density map.

One forward pass taps every layer's output (explain.graph.FlatGraph.run); the backtracking is NumPy.
Neurons are kept as flat indices into a layer's output (batch dropped; row-major like Keras'
Flatten/Reshape, which therefore map indices unchanged). What each layer type does:

- Dense: the inputs i of an output j with a positive contribution a_i * w_ij (the paper's rule).
- Conv2D (groups too): in the receptive field of an output (y, x, k), contributions a * w per input
  position and channel; the channels whose summed contribution is positive are kept, each with its
  single largest-contribution position (the paper's Algorithm). If no channel is positive, the
  path ends there (FALLBACK = True would follow the largest non-zero contribution instead).
- DepthwiseConv2D: one input channel per output, kept (at its largest a * w position) when its
  summed contribution is positive: the conv rule with one channel.
- MaxPooling: the argmax position; AveragePooling / GlobalAveragePooling: the positions with positive
  activation (positive contribution a / n); GlobalMaxPooling: the argmax.
- BatchNormalization, activations, Dropout, Rescaling, Flatten, Reshape...: identity on indices.
- ZeroPadding2D / Cropping2D / UpSampling2D: the index shift / scaling.
- Add / Average / Multiply: every input (broadcast dims to 0); Maximum: the largest input;
  Concatenate: the input owning that channel range.

Budget: a layer's discriminative set is capped to the `budget` neurons with the largest
contribution (the paper keeps them all); at the image every (y, x) reached counts once.
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np
import tensorflow as tf

from explain.errors import ExplainError

INPUT = "<input>"
L = keras.layers

_IDENTITY = tuple(getattr(L, n) for n in (
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
    "GaussianNoise", "AlphaDropout", "ActivityRegularization", "Rescaling", "Normalization",
    "Identity", "Flatten", "Reshape") if hasattr(L, n))


def _unsupported(path, op):
    return ExplainError(f"CNN Fixations cannot backtrack through layer '{path}' "
                        f"({type(op).__name__}): no rule for this layer type")


def _plan(graph):
    """[(path, op, input keys)] in execution order and the output key; a key is a producing layer's
    path or INPUT (nested-model boundaries resolved)."""
    alias = {}
    steps = []
    for kind, a, b, path in graph._steps:
        if kind == "alias":
            alias[a] = b
        else:
            steps.append((path, b, a))

    def key(tid):
        while tid in alias:
            tid = alias[tid]
        if tid == graph._input_id:
            return INPUT
        if tid not in graph._producer:
            raise ExplainError("CNN Fixations: a layer input is not produced by the model graph")
        return graph._producer[tid]

    plan, seen = [], set()
    for path, op, node in steps:
        if path in seen:
            raise ExplainError(f"CNN Fixations cannot backtrack through layer '{path}' "
                               f"({type(op).__name__}): it is called more than once (shared)")
        seen.add(path)
        plan.append((path, op, [key(id(t)) for t in node.input_tensors]))
    return plan, key(graph._output_id)


#: True: a neuron none of whose inputs contributes positively follows its largest non-zero
#: contribution (not in the paper; off: on efficientnet-lite0 it adds ~5% more fixations).
FALLBACK = False


def _fallback(keep, score):
    """Rows with nothing kept keep their largest score, when that is not zero: a neuron whose
    inputs all contribute <= 0 still has a best input (the paper's rule would end the path; a BN
    after a conv can flip signs), but an all-zero (dead) row ends it."""
    if not FALLBACK:
        return
    none = np.flatnonzero(~keep.any(1))
    if len(none):
        sub = np.where(np.isfinite(score[none]), score[none], -np.inf)
        best = sub.argmax(1)
        ok = sub[np.arange(len(none)), best] != 0
        keep[none[ok], best[ok]] = True


# -- windows --------------------------------------------------------------------------------------
def _pads(size, k, s, d, padding):
    if padding == "valid":
        return 0
    if padding != "same":
        raise ValueError(padding)
    out = math.ceil(size / s)
    return max((out - 1) * s + (k - 1) * d + 1 - size, 0) // 2


def _window(shape, y, x, ksize, strides, dil, padding):
    """Input rows (n, kh), cols (n, kw) of the windows of outputs (y, x), and validity masks."""
    (H, W), (kh, kw), (sh, sw), (dh, dw) = shape[:2], ksize, strides, dil
    pt, pl = _pads(H, kh, sh, dh, padding), _pads(W, kw, sw, dw, padding)
    iy = y[:, None] * sh - pt + np.arange(kh)[None] * dh
    ix = x[:, None] * sw - pl + np.arange(kw)[None] * dw
    vy, vx = (iy >= 0) & (iy < H), (ix >= 0) & (ix < W)
    return np.clip(iy, 0, H - 1), np.clip(ix, 0, W - 1), vy, vx


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _channels_last(path, op):
    if getattr(op, "data_format", "channels_last") != "channels_last":
        raise ExplainError(f"CNN Fixations: layer '{path}' is channels_first, which is not supported")


# -- rules: (points of the output, input activations, output shape) -> [(input number, idx, score)]
def _dense(op, p, s, ins, out_shape):
    a = ins[0]
    W = np.asarray(op.kernel.numpy(), np.float32)  # (n, m)
    n, m = W.shape
    flat = a.reshape(-1, n)
    pos, j = p // m, p % m
    C = flat[pos] * W[:, j].T                      # (pts, n)
    keep = C > 0
    _fallback(keep, C)
    r, i = np.nonzero(keep)
    return [(0, pos[r] * n + i, C[r, i])]


def _conv(op, p, s, ins, out_shape, path):
    _channels_last(path, op)
    a = ins[0]
    H, Wd, Cin = a.shape
    kernel = np.asarray(op.kernel.numpy(), np.float32)  # (kh, kw, cin/g, K)
    kh, kw, cg, K = kernel.shape
    groups = getattr(op, "groups", 1) or 1
    y, x, k = np.unravel_index(p, out_shape)
    iy, ix, vy, vx = _window(a.shape, y, x, (kh, kw), _pair(op.strides), _pair(op.dilation_rate),
                             op.padding)
    ch = (k // (K // groups))[:, None] * cg + np.arange(cg)[None]            # (n, cg)
    if kh == kw == 1:   # pointwise: one position, the channel rule alone (fast path)
        yy, xx = iy[:, 0], ix[:, 0]
        contrib = a[yy[:, None], xx[:, None], ch] * kernel[0, 0][:, k].T      # (n, cg)
        keep = contrib > 0
        _fallback(keep, contrib)
        r, c = np.nonzero(keep)
        return [(0, np.ravel_multi_index((yy[r], xx[r], ch[r, c]), a.shape), contrib[r, c])]
    patch = a[iy[:, :, None, None], ix[:, None, :, None], ch[:, None, None, :]]  # (n, kh, kw, cg)
    valid = (vy[:, :, None] & vx[:, None, :])[..., None]
    contrib = patch * np.moveaxis(kernel[..., k], -1, 0) * valid
    chan = contrib.sum((1, 2))                                               # (n, cg)
    keep = chan > 0
    _fallback(keep, chan)
    masked = np.where(valid, contrib, -np.inf).reshape(len(p), kh * kw, cg)
    best = masked.argmax(1)                                                  # (n, cg)
    r, c = np.nonzero(keep)
    dy, dx = np.divmod(best[r, c], kw)
    ok = vy[r, dy] & vx[r, dx]
    r, c, dy, dx = r[ok], c[ok], dy[ok], dx[ok]
    idx = np.ravel_multi_index((iy[r, dy], ix[r, dx], ch[r, c]), a.shape)
    return [(0, idx, masked[r, best[r, c], c])]


def _depthwise(op, p, s, ins, out_shape, path):
    _channels_last(path, op)
    a = ins[0]
    kernel = np.asarray(op.kernel.numpy(), np.float32)  # (kh, kw, C, mult)
    kh, kw, C, mult = kernel.shape
    y, x, k = np.unravel_index(p, out_shape)
    c, mm = k // mult, k % mult
    iy, ix, vy, vx = _window(a.shape, y, x, (kh, kw), _pair(op.strides), _pair(op.dilation_rate),
                             op.padding)
    patch = a[iy[:, :, None], ix[:, None, :], c[:, None, None]]             # (n, kh, kw)
    w = np.moveaxis(kernel[:, :, c, mm], -1, 0)
    valid = vy[:, :, None] & vx[:, None, :]
    raw = (patch * w * valid).reshape(len(p), -1)
    contrib = np.where(valid.reshape(len(p), -1), raw, -np.inf)
    best = contrib.argmax(1)
    keep = raw.sum(1) > 0   # the one input channel, kept when its contribution is positive
    _fallback(keep[:, None], raw.sum(1)[:, None])
    r = np.flatnonzero(keep)
    dy, dx = np.divmod(best[r], kw)
    idx = np.ravel_multi_index((iy[r, dy], ix[r, dx], c[r]), a.shape)
    return [(0, idx, contrib[r, best[r]])]


def _pool(op, p, s, ins, out_shape, path, kind):
    _channels_last(path, op)
    a = ins[0]
    y, x, c = np.unravel_index(p, out_shape)
    ksize = _pair(op.pool_size)
    iy, ix, vy, vx = _window(a.shape, y, x, ksize, _pair(op.strides), (1, 1), op.padding)
    vals = a[iy[:, :, None], ix[:, None, :], c[:, None, None]]
    valid = vy[:, :, None] & vx[:, None, :]
    vals = np.where(valid, vals, -np.inf).reshape(len(p), -1)
    keep = _pooled(vals, kind)
    r, q = np.nonzero(keep)
    dy, dx = np.divmod(q, ksize[1])
    idx = np.ravel_multi_index((iy[r, dy], ix[r, dx], c[r]), a.shape)
    return [(0, idx, vals[r, q])]


def _pooled(vals: np.ndarray, kind: str) -> np.ndarray:
    """Which window entries a pooled neuron backtracks to, per row: max pooling its argmax,
    average pooling every positive entry (the fallback rule when none is)."""
    if kind == "max":
        keep = np.zeros(vals.shape, bool)
        keep[np.arange(len(vals)), vals.argmax(1)] = True
        return keep
    keep = vals > 0
    _fallback(keep, vals)
    return keep


def _global_pool(op, p, s, ins, out_shape, path, kind):
    _channels_last(path, op)
    a = ins[0]
    if a.ndim != 3:
        raise _unsupported(path, op)
    H, W, C = a.shape
    c = p % C
    vals = a.reshape(H * W, C)[:, c].T                                      # (n, HW)
    keep = _pooled(vals, kind)
    r, q = np.nonzero(keep)
    return [(0, q * C + c[r], vals[r, q] / (1 if kind == "max" else H * W))]


def _shift(op, p, s, ins, out_shape, path):
    _channels_last(path, op)
    a = ins[0]
    y, x, c = np.unravel_index(p, out_shape)
    if isinstance(op, L.ZeroPadding2D):
        (t, _), (l, _) = op.padding
        y, x = y - t, x - l
    elif isinstance(op, L.Cropping2D):
        (t, _), (l, _) = op.cropping
        y, x = y + t, x + l
    else:  # UpSampling2D
        sh, sw = _pair(op.size)
        y, x = y // sh, x // sw
    ok = (y >= 0) & (y < a.shape[0]) & (x >= 0) & (x < a.shape[1])
    return [(0, np.ravel_multi_index((y[ok], x[ok], c[ok]), a.shape), s[ok])]


def _merge(op, p, s, ins, out_shape, path):
    multi = np.unravel_index(p, out_shape)
    mapped = []
    for a in ins:
        shape = (1,) * (len(out_shape) - a.ndim) + a.shape
        idx = tuple(np.zeros_like(m) if n == 1 else m for m, n in zip(multi, shape))
        mapped.append(np.ravel_multi_index(idx, shape))
    if isinstance(op, L.Maximum):
        vals = np.stack([a.reshape(-1)[m] for a, m in zip(ins, mapped)])
        win = vals.argmax(0)
        return [(i, m[win == i], s[win == i]) for i, m in enumerate(mapped)]
    return [(i, m, s) for i, m in enumerate(mapped)]


def _concat(op, p, s, ins, out_shape, path):
    axis = op.axis if op.axis < 0 else op.axis - 1   # without the batch dimension
    axis %= len(out_shape)
    multi = list(np.unravel_index(p, out_shape))
    bounds = np.cumsum([0] + [a.shape[axis] for a in ins])
    which = np.searchsorted(bounds, multi[axis], side="right") - 1
    out = []
    for i, a in enumerate(ins):
        sel = which == i
        idx = [m[sel] for m in multi]
        idx[axis] = idx[axis] - bounds[i]
        out.append((i, np.ravel_multi_index(tuple(idx), a.shape), s[sel]))
    return out


def _backtrack_layer(path, op, p, s, ins, out_shape):
    if isinstance(op, L.DepthwiseConv2D):
        return _depthwise(op, p, s, ins, out_shape, path)
    if isinstance(op, L.Conv2D) and not isinstance(op, (L.Conv2DTranspose, L.SeparableConv2D)):
        if len(ins[0].shape) != 3:
            raise _unsupported(path, op)
        return _conv(op, p, s, ins, out_shape, path)
    if isinstance(op, L.Dense):
        return _dense(op, p, s, ins, out_shape)
    if isinstance(op, L.MaxPooling2D):
        return _pool(op, p, s, ins, out_shape, path, "max")
    if isinstance(op, L.AveragePooling2D):
        return _pool(op, p, s, ins, out_shape, path, "avg")
    if isinstance(op, L.GlobalAveragePooling2D):
        return _global_pool(op, p, s, ins, out_shape, path, "avg")
    if isinstance(op, L.GlobalMaxPooling2D):
        return _global_pool(op, p, s, ins, out_shape, path, "max")
    if isinstance(op, (L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D)):
        if len(out_shape) != 3:
            raise _unsupported(path, op)
        return _shift(op, p, s, ins, out_shape, path)
    if isinstance(op, (L.Add, L.Average, L.Multiply, L.Maximum)):
        return _merge(op, p, s, ins, out_shape, path)
    if isinstance(op, L.Concatenate):
        return _concat(op, p, s, ins, out_shape, path)
    if isinstance(op, _IDENTITY):
        if len(ins) != 1 or ins[0].size != int(np.prod(out_shape)):
            raise _unsupported(path, op)
        return [(0, p, s)]
    raise _unsupported(path, op)


def _select(parts, budget, size):
    """Unique flat indices (largest score kept), capped to the `budget` largest scores."""
    best = np.full(size, -np.inf)
    for q, v in parts:
        np.maximum.at(best, np.asarray(q, np.int64), np.asarray(v, np.float64))
    idx = np.flatnonzero(best > -np.inf)
    if len(idx) > budget:
        idx = idx[np.argpartition(-best[idx], budget - 1)[:budget]]
    return idx, best[idx]


def backtrack(graph, x, target: int, budget: int = 2000):
    """Fixations of class `target` for model input x (1, H, W, C): returns (points (n, 2) of
    (row, col) in the input, {layer path: number of discriminative neurons kept})."""
    plan, out_key = _plan(graph)
    needed, frontier = set(), {out_key}
    producers = {path: keys for path, _, keys in plan}
    while frontier:   # the layers the output depends on
        k = frontier.pop()
        if k == INPUT or k in needed:
            continue
        needed.add(k)
        frontier.update(producers.get(k, ()))
    if out_key == INPUT:
        raise ExplainError("CNN Fixations: the model output is its input")
    _, found = graph.run(tf.convert_to_tensor(np.asarray(x, np.float32)),
                         tuple(p for p, _, _ in plan if p in needed))
    acts = {k: v.numpy()[0] for k, v in found.items()}
    acts[INPUT] = np.asarray(x, np.float32)[0]

    pending = {out_key: [(np.array([int(target)]), np.array([1.0]))]}
    counts = {}
    for path, op, keys in reversed(plan):
        parts = pending.pop(path, None)
        if not parts:
            continue
        if path not in acts:
            raise ExplainError(f"CNN Fixations: no activations tapped for layer '{path}'")
        p, s = _select(parts, budget, acts[path].size)
        counts[path] = int(len(p))
        out_shape = acts[path].shape
        ins = [acts[k] for k in keys]
        for i, q, v in _backtrack_layer(path, op, p, s, ins, out_shape):
            if len(q):
                pending.setdefault(keys[i], []).append((np.asarray(q), np.asarray(v)))
    parts = pending.get(INPUT)
    if not parts:
        return np.zeros((0, 2), np.int64), counts
    idx = np.unique(np.concatenate([q for q, _ in parts]))
    img = acts[INPUT]
    y, xx = np.unravel_index(idx, img.shape)[:2]
    points = np.unique(np.stack([y, xx], 1), axis=0)
    return points, counts


def density(points, shape, sigma: float) -> np.ndarray:
    """Fixation counts on an (h, w) grid blurred by a Gaussian of `sigma` pixels."""
    m = np.zeros(shape, np.float32)
    if len(points):
        np.add.at(m, (points[:, 0], points[:, 1]), 1.0)
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma),
                             borderType=cv2.BORDER_CONSTANT)
    return m

"""Compiled passes of one model: every method is a small formula on a few of these.

Each pass is a ``tf.function`` traced once per (kind, layer, score kind) with fixed input
signatures (any batch size, the model's input size), kept as its concrete function (calling it
skips tf.function's per-call signature matching, ~0.5 ms, a tenth of a small model's pass):

- ``cam``: one forward + backward to the layer -> activations A, gradients G, outputs, target,
  and the layer's CAM head kernel (empty if it has none). All gradient CAMs share it. Given a
  tuple of layers (layer fusion), one forward + backward taps them all: A, G and the kernels are
  then tuples, one entry per layer.
- ``tap``: forward only -> A, outputs, CAM head kernel (activations, Eigen-CAM, CAM, Score-CAM);
  a tuple of layers likewise in one forward.
- ``grad`` / ``guided``: forward + backward to the input, batched (rows independent).
- ``forward``: outputs only. ``blend``: batched masked forwards (explain.perturb).
- ``ablate``: a batch of the layer's activations (n, h, w, K) -> outputs, the model resumed from
  the layer (FlatGraph.run_from); ``below``: the tensors computed below the layer that layers
  above it read (skip connections), from the clean image, fed to ``ablate`` as constants.

With a `KeptPasses` (explain.kept), a pass another process traced for the same architecture is
loaded instead of traced, and a pass traced here is saved for the next process.

The score is S_t - S_c (c = -1: no contrast), S the logit or the probability; t = -1 means the
top-1 class of row 0, resolved inside the pass so no extra forward is needed.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import tensorflow as tf

from explain import formulas as F
from explain.flight import SingleFlight
from explain.graph import FlatGraph
from explain.kept import KeptPasses
from explain.perturb import MaskSource, run_batches

log = logging.getLogger("camlens.passes")


class Passes:
    """The compiled passes of one model (a FlatGraph) at one input size."""

    def __init__(self, graph: FlatGraph, size: tuple[int, int], channels: int,
                 cam_head: Callable[[str], object], kept: KeptPasses | None = None):
        self.graph, self.size, self.channels = graph, size, channels
        self.kept = kept           # passes saved by an earlier process (explain.kept), or None
        self.cam_head = cam_head   # layer -> its GAP + Dense head's Dense layer, or None
        self.squash = "sigmoid" if graph.head_activation == "sigmoid" or graph.output_shape[-1] == 1 \
            else "softmax"
        self._fns: dict[tuple, Callable] = {}
        self._flights = SingleFlight()   # one trace per pass; never held while tracing

    def fn(self, kind: str, layer: str | None = None, score: str = "logit"):
        """The pass, traced on first use and kept. Threads asking for the same pass share one trace;
        a pass being traced never blocks a different one (a prediction's ``forward`` is not held
        up by a background warm-up tracing ``cam``)."""
        key = (kind, layer, score)
        return self._flights.get(key, lambda: self._trace_or_load(key),
                                 lookup=lambda: self._fns.get(key),
                                 publish=lambda fn: self._fns.__setitem__(key, fn))

    def _trace_or_load(self, key: tuple):
        """The kept pass when an earlier process saved one, else a fresh trace (then kept)."""
        function = self._build(*key)
        if self.kept is None:
            return function.get_concrete_function()
        kept_key = (*key, self.size, self.channels, self.squash)
        loaded = self.kept.load(kept_key, list(function.input_signature))
        if loaded is not None:
            log.info("pass %s loaded from the kept passes, not traced", key)
            return loaded
        concrete = function.get_concrete_function()
        try:
            self.kept.keep(kept_key, concrete)
        except OSError as error:   # a full or read-only disk costs the next start a trace, nothing else
            log.warning("could not keep pass %s: %s", key, error)
        return concrete

    def traced(self) -> list[tuple]:
        """(kind, layer, score) of every pass traced so far."""
        with self._flights.lock:
            return list(self._fns)

    def _build(self, kind, layer, score):
        xs = tf.TensorSpec([None, *self.size, self.channels], tf.float32)
        ts = tf.TensorSpec([], tf.int32)
        graph = self.graph

        def outputs(x, taps=(), guided=False):
            out, found = graph.run(x, taps, guided=guided)
            return tf.cast(out, tf.float32), {k: tf.cast(v, tf.float32) for k, v in found.items()}

        def resolve(out, target):
            return tf.where(target < 0, tf.cast(tf.argmax(out[0]), tf.int32), target)

        def total_score(out, t, c):
            s = out if score == "logit" else self.squash_tf(out)
            chosen = tf.gather(s, t, axis=1)
            other = tf.gather(s, tf.maximum(c, 0), axis=1)
            return tf.reduce_sum(chosen - tf.where(c >= 0, other, tf.zeros_like(other)))

        if kind == "forward":
            return tf.function(lambda x: outputs(x)[0], input_signature=[xs], autograph=False)
        if kind == "blend":
            return make_blend_forward(lambda x: outputs(x)[0], self.size, self.channels)
        if kind == "below":
            @tf.function(input_signature=[xs], autograph=False)
            def below(x):
                return [tf.identity(v) for v in graph.run_below(x, layer)]
            return below
        if kind == "ablate":
            plan = graph.resume_plan(layer)
            a_spec = tf.TensorSpec([None, *plan.layer_out.shape[1:]], tf.float32)
            b_specs = [tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in plan.below]

            @tf.function(input_signature=[a_spec, b_specs], autograph=False)
            def ablate(A, below):
                return tf.cast(graph.run_from(layer, A, below), tf.float32)
            return ablate
        several = isinstance(layer, tuple)   # layer fusion: tap these layers in one pass
        layers = layer if several else (layer,)
        heads = [self.cam_head(p) if p is not None else None for p in layers]

        def cam_weights(head):
            """The CAM head's Dense kernel (K, classes), read inside the pass (after it, a variable
            read costs CAM ~0.3 ms); empty when `layer` does not feed a GAP + Dense head."""
            return tf.cast(head.kernel, tf.float32) if head is not None else tf.zeros((0, 0))

        def per_layer(values):
            return tuple(values) if several else values[0]

        if kind == "tap":
            @tf.function(input_signature=[xs], autograph=False)
            def tap(x):
                out, found = outputs(x, layers)
                return (per_layer([found[p] for p in layers]), out,
                        per_layer([cam_weights(h) for h in heads]))
            return tap
        if kind == "cam":
            @tf.function(input_signature=[xs, ts, ts], autograph=False)
            def cam_pass(x, target, contrast):
                with tf.GradientTape() as tape:
                    tape.watch(x)   # so frozen (non-trainable) models are still recorded
                    out, found = outputs(x, layers)
                    t = resolve(out, target)
                    s = total_score(out, t, contrast)
                A = [found[p] for p in layers]
                G = tape.gradient(s, A)   # each dS/dA_i, through the layers above it
                return (per_layer(A), per_layer(G), out, t,
                        per_layer([cam_weights(h) for h in heads]))
            return cam_pass
        if kind in ("grad", "guided"):
            @tf.function(input_signature=[xs, ts, ts], autograph=False)
            def grad_pass(x, target, contrast):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    out, _ = outputs(x, guided=kind == "guided")
                    t = resolve(out, target)
                    s = total_score(out, t, contrast)
                return tape.gradient(s, x), out, t
            return grad_pass
        raise ValueError(kind)

    def squash_tf(self, out):
        return tf.sigmoid(out) if self.squash == "sigmoid" else tf.nn.softmax(out, axis=-1)

    # -- NumPy side -------------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fn("forward")(tf.constant(x, tf.float32)).numpy()

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs (pre-activation scores) -> probabilities (softmax, or sigmoid heads)."""
        o = np.asarray(outputs, np.float64)
        return (1 / (1 + np.exp(-o))) if self.squash == "sigmoid" else F.softmax(o)

    def scores(self, outputs: np.ndarray, target: int, score: str = "logit",
               contrast: int | None = None) -> np.ndarray:
        """(N, classes) outputs -> (N,) score of `target` (logit or probability), minus that of
        `contrast` when given."""
        o = np.asarray(outputs if score == "logit" else self.probabilities(outputs), np.float64)
        return o[:, target] - (o[:, contrast] if contrast is not None else 0.0)

    def input_gradients(self, xb: np.ndarray, target: int | None, score: str = "logit",
                        guided: bool = False, contrast: int | None = None):
        """Gradient of the score w.r.t. each input of a batch (rows independent). target None =
        top-1 of row 0. Returns (gradients, outputs, target)."""
        fn = self.fn("guided" if guided else "grad", None, score)
        g, out, t = fn(tf.constant(xb, tf.float32), _index(target), _index(contrast))
        return g.numpy(), out.numpy(), int(t)

    def layer_pass(self, x: np.ndarray, layer: str | tuple[str, ...], target: int | None, score: str = "logit",
                   contrast: int | None = None):
        """The ``cam`` pass: (A, G, outputs, target, CAM head kernel) for a batch; for a tuple of
        layers, A, G and the kernels are tuples (one pass taps them all)."""
        A, G, out, t, W = self.fn("cam", layer, score)(tf.constant(x, tf.float32), _index(target),
                                                        _index(contrast))
        if isinstance(layer, tuple):
            return tuple(a.numpy() for a in A), tuple(g.numpy() for g in G), out.numpy(), int(t), W
        return A.numpy(), G.numpy(), out.numpy(), int(t), W

    def tap(self, x: np.ndarray, layer: str | tuple[str, ...]):
        """The ``tap`` pass: (A, outputs, CAM head kernel); for a tuple of layers, A and the
        kernels are tuples."""
        A, out, W = self.fn("tap", layer)(tf.constant(x, tf.float32))
        if isinstance(layer, tuple):
            return tuple(a.numpy() for a in A), out.numpy(), W
        return A.numpy(), out.numpy(), W

    def resumed_outputs(self, x: np.ndarray, layer: str, A: np.ndarray, channels, *,
                        batch_size: int = 16, progress=None, cancel=None) -> np.ndarray:
        """The ``ablate`` pass: (len(channels), classes) pre-activation outputs with channel
        channels[i] of the activations A (h, w, K) of `layer` set to zero, the model resumed from
        `layer` (the layers below it are not run again; the tensors above it read from below it
        are computed once from x by the ``below`` pass)."""
        channels = np.asarray(channels, int)
        if len(channels) == 0:
            return np.zeros((0, self.graph.output_shape[-1]), np.float32)
        if self.graph.resume_plan(layer).below:
            below = list(self.fn("below", layer)(tf.constant(x, tf.float32)))
        else:
            below = []
        fn = self.fn("ablate", layer)
        A = np.asarray(A, np.float32)

        def compute(start, stop):
            idx = channels[start:stop]
            batch = np.repeat(A[None], len(idx), axis=0)
            batch[np.arange(len(idx)), ..., idx] = 0.0
            return fn(tf.constant(batch), below).numpy()

        parts = run_batches(len(channels), compute, batch_size=batch_size, progress=progress,
                            cancel=cancel)
        return np.concatenate(parts)

    def masked_outputs(self, x: np.ndarray, baseline: np.ndarray, masks, *, batch_size: int = 16,
                       progress=None, cancel=None) -> np.ndarray:
        """(N, classes) pre-activation outputs for x blended with baseline by each mask."""
        return run_masked(self.fn("blend"), x, baseline, masks, batch_size=batch_size,
                          progress=progress, cancel=cancel)


def _index(value: int | None):
    return tf.constant(-1 if value is None else int(value), tf.int32)


def make_blend_forward(run: Callable, size: tuple[int, int], channels: int):
    """Compiled (x (1,H,W,C), baseline (1,H,W,C), masks (n,h,w)) -> run(blended) outputs.

    `run` maps a model-input batch to the model's (n, classes) outputs. One trace serves all
    batch sizes and mask resolutions (None dimensions in the signature).
    """
    H, W = size
    spec = tf.TensorSpec([1, H, W, channels], tf.float32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([None, None, None], tf.float32)], autograph=False)
    def blend_forward(x, baseline, masks):
        m = masks[..., None]
        same = tf.logical_and(tf.shape(m)[1] == H, tf.shape(m)[2] == W)
        m = tf.cond(same, lambda: m, lambda: tf.image.resize(m, (H, W), method="bilinear"))
        return run(baseline + (x - baseline) * m)

    return blend_forward


def run_masked(forward: Callable, x: np.ndarray, baseline: np.ndarray, masks: MaskSource, *,
               batch_size: int = 16, progress: Callable[[float], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Model outputs (N, classes) for the N masked versions of x (see make_blend_forward)."""
    x = tf.constant(x, tf.float32)
    baseline = tf.constant(np.broadcast_to(baseline, x.shape), tf.float32)

    def compute(start, stop):
        m = np.asarray(masks[start:stop], np.float32)
        return np.asarray(forward(x, baseline, tf.constant(m)))

    parts = run_batches(len(masks), compute, batch_size=batch_size, progress=progress, cancel=cancel)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

"""A Keras model flattened into one list of layer calls, so any layer (also inside nested
sub-models) can be tapped, and the head or the ReLUs swapped, without touching the user's model.

Why not ``keras.Model(model.input, [layer.output, model.output])``: a layer inside a nested
sub-model (``Sequential([base, GAP, Dense])``) lives in the sub-model's own graph, so its tensor is
not reachable from the outer input. Rebuilding the graph symbolically would add nodes to the
user's layers and cloning would copy (and later go stale from) the weights. Instead we walk the
graphs once (outer and nested, depth-first) into a flat plan and execute that plan on real tensors
inside a ``tf.function``: the original layer objects and variables are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf

from explain.errors import ExplainError, LayerError

SQUASHING = ("softmax", "sigmoid")


@dataclass(frozen=True)
class LayerInfo:
    path: str               # "layer" or "sub_model/layer"
    layer: object           # the Keras operation
    shape: tuple            # output shape, batch dim included (None)
    container: bool = False  # a nested model: its output is its last inner layer's output


def _functional(model):
    """The Functional graph behind a Functional or a built Sequential model (None otherwise)."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    return None


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") if act is not None else ""


def linear_twin(layer):
    """The same layer object state with a linear activation: shares the variables (so later weight
    changes show up) but is a separate object, so the user's layer is never modified."""
    twin = object.__new__(type(layer))
    twin.__dict__.update(layer.__dict__)
    object.__setattr__(twin, "activation", keras.activations.linear)
    return twin


@tf.custom_gradient
def _guided_gate(y):
    """Identity forward; backward passes only positive gradients (Springenberg et al. 2015).
    Placed after a ReLU whose own derivative already keeps only positive inputs, the pair gives
    the guided-backprop rule dx = relu(dy) * [x > 0]."""
    return tf.identity(y), lambda dy: tf.nn.relu(dy)


def _is_relu(layer) -> bool:
    return isinstance(layer, keras.layers.ReLU) or _activation_name(layer) == "relu"


class FlatGraph:
    """Flat execution plan of a (possibly nested) Keras model with a single image input/output."""

    def __init__(self, model: keras.Model):
        fn = _functional(model)
        if fn is None:
            raise ExplainError(
                "the model has no graph yet: build it with an Input (keras.Input) before explaining")
        if len(fn.inputs) != 1 or len(fn.outputs) != 1:
            raise ExplainError("only models with one image input and one output are supported")
        self.model = model
        self._resume_plans: dict[str, ResumePlan] = {}   # layer -> what resuming from it needs
        self.input_shape = tuple(fn.inputs[0].shape)
        self.output_shape = tuple(fn.outputs[0].shape)
        if len(self.input_shape) != 4:
            raise ExplainError(f"the model input must be an image batch (N,H,W,C), got {self.input_shape}")
        if len(self.output_shape) != 2:
            raise ExplainError(f"the model output must be class scores (N,classes), got {self.output_shape}")
        self._input_id = id(fn.inputs[0])
        self._steps: list[tuple] = []
        self._producer: dict[int, str] = {}   # tensor id -> path of the layer that makes it
        self.layers: dict[str, LayerInfo] = {}
        self._walk(fn, "")
        self._output_id = id(fn.outputs[0])
        self.relu_count = sum(1 for kind, _, op, _ in self._steps if kind == "call" and _is_relu(op))
        self.head_path = self._producer.get(self._output_id)
        head = self.layers[self.head_path].layer if self.head_path else None
        self.head_activation = _activation_name(head) if _activation_name(head) in SQUASHING else "none"
        if isinstance(head, keras.layers.Softmax):
            self.head_activation = "softmax"

    # -- building -------------------------------------------------------------------------------
    def _walk(self, fn, prefix: str) -> None:
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                op = node.operation
                if node.is_input or op is None:
                    continue
                path = prefix + op.name
                inner = _functional(op) if isinstance(op, keras.Model) else None
                out = node.outputs[0] if node.outputs else None
                if inner is not None:
                    for outer_t, inner_t in zip(node.input_tensors, inner.inputs):
                        self._steps.append(("alias", id(inner_t), id(outer_t), None))
                    self._walk(inner, path + "/")
                    for outer_t, inner_t in zip(node.outputs, inner.outputs):
                        self._steps.append(("alias", id(outer_t), id(inner_t), path))
                    self._producer[id(out)] = self._producer.get(id(inner.outputs[0]), path)
                    self.layers[path] = LayerInfo(path, op, tuple(out.shape), container=True)
                else:
                    self._steps.append(("call", node, op, path))
                    if out is not None:
                        self._producer[id(out)] = path
                        self.layers.setdefault(path, LayerInfo(path, op, tuple(out.shape)))

    # -- layer queries ---------------------------------------------------------------------------
    def spatial_layers(self) -> list[str]:
        """Paths of layers with a 4-D output, in execution order (nested models by their layers)."""
        return [p for p, info in self.layers.items() if len(info.shape) == 4 and not info.container]

    def default_layer(self) -> str | None:
        """The last layer whose spatial size is > 1 (Grad-CAM's usual choice: the last conv block)."""
        def size(info):
            h, w = info.shape[1], info.shape[2]
            return (h or 2) * (w or 2)
        cands = [p for p in self.spatial_layers() if size(self.layers[p]) > 1]
        return cands[-1] if cands else None

    def resolve(self, path: str) -> str:
        """Validated canonical path of a spatial layer; LayerError with the reason otherwise."""
        info = self.layers.get(path)
        if info is None:
            names = self.spatial_layers()
            hint = ", ".join(names[-4:])
            raise LayerError(f"no layer '{path}' in the model; spatial layers include: {hint}")
        if len(info.shape) != 4:
            raise LayerError(
                f"layer '{path}' has no spatial output (shape {info.shape[1:]}); "
                "choose a convolutional layer with a (height, width, channels) output")
        if info.container:
            inner = [p for p in self.spatial_layers() if p.startswith(path + "/")]
            return inner[-1] if inner else path
        return path

    def consumers(self, path: str) -> list[str]:
        """Paths of layers that take `path`'s output as input (nested model boundaries crossed)."""
        ids = {i for i, p in self._producer.items() if p == path}
        changed = True
        while changed:  # follow aliases across nested-model boundaries
            changed = False
            for kind, a, b, _ in self._steps:
                if kind == "alias" and b in ids and a not in ids:
                    ids.add(a)
                    changed = True
        out = []
        for kind, node, op, p in self._steps:
            if kind == "call" and any(id(t) in ids for t in node.input_tensors):
                out.append(p)
        return out

    # -- execution --------------------------------------------------------------------------------
    def run(self, x, taps: tuple[str, ...] = (), *, logits: bool = True, guided: bool = False):
        """Execute on a real tensor: returns (output, {path: tensor}).

        logits=True: the head's softmax/sigmoid is dropped (pre-activation scores; Grad-CAM uses
        the logit because softmax saturates gradients). guided=True: every ReLU (as a layer or
        as a layer's activation) gets the guided-backprop gradient gate.
        """
        values = {self._input_id: x}
        found = {}
        tapset = set(taps)
        for kind, a, b, path in self._steps:
            if kind == "alias":
                values[a] = values[b]
                continue
            node, op = a, b
            flat = self._call_step(node, op, path, values, logits)
            if guided and _is_relu(op):
                flat = [_guided_gate(t) for t in flat]
            for t, v in zip(node.outputs, flat):
                values[id(t)] = v
            if path in tapset:
                found[path] = flat[0]
        return values[self._output_id], found

    # -- resuming from a layer (Ablation-CAM) -----------------------------------------------------
    def resume_plan(self, path: str) -> ResumePlan:
        """The cached ResumePlan of layer `path` (see run_from)."""
        if path not in self._resume_plans:
            self._resume_plans[path] = _resume_plan(self, path)
        return self._resume_plans[path]

    def run_below(self, x, path: str, *, logits: bool = True) -> list:
        """The tensors that the layers above `path` read from below it (ResumePlan.below), for input
        x (the clean image): run every step except the layer and the ones that depend on it."""
        plan = self.resume_plan(path)
        skip = {id(s[1]) for s in plan.steps if s[0] == "call"}
        values = {self._input_id: x}
        for j, (kind, a, b, p) in enumerate(self._steps):
            if kind == "alias":
                if b in values:
                    values[a] = values[b]
                continue
            if j == plan.index or id(a) in skip or any(id(t) not in values for t in a.input_tensors):
                continue
            for t, v in zip(a.outputs, self._call_step(a, b, p, values, logits)):
                values[id(t)] = v
        return [values[id(t)] for t in plan.below]

    def run_from(self, path: str, A, below, *, logits: bool = True):
        """The model output for activations A (n, h, w, K) of layer `path`, the layers below it not
        run again: `below` are run_below's tensors (batch 1, from the clean image), repeated to n rows.
        Nested models and layers reading tensors from below the layer (residual adds, concats) work
        because the flat plan crosses model boundaries by aliases."""
        plan = self.resume_plan(path)
        n = tf.shape(A)[0]
        values = {id(plan.layer_out): tf.cast(A, plan.layer_out.dtype)}
        for t, v in zip(plan.below, below):
            v = tf.convert_to_tensor(v)
            values[id(t)] = tf.broadcast_to(v, tf.concat([[n], tf.shape(v)[1:]], 0))
        for kind, a, b, p in plan.steps:
            if kind == "alias":
                values[a] = values[b]
                continue
            for t, v in zip(a.outputs, self._call_step(a, b, p, values, logits)):
                values[id(t)] = v
        return values[self._output_id]

    def _call_step(self, node, op, path, values, logits: bool) -> list:
        """One layer call of the plan on `values` (as in run, without the guided gate)."""
        args, kwargs = node.arguments.fill_in(values)
        if "training" in getattr(op, "_call_context_args", ()):
            kwargs["training"] = False
        call: Callable = op
        if logits and path == self.head_path and self.head_activation != "none":
            call = _identity if isinstance(op, keras.layers.Softmax) else linear_twin(op)
        outs = call(*args, **kwargs)
        return list(outs) if isinstance(outs, (list, tuple)) else [outs]

    @property
    def _output_tensor(self):
        fn = _functional(self.model)
        return fn.outputs[0]


def _identity(x, *args, **kwargs):
    return x


@dataclass(frozen=True)
class ResumePlan:
    """How to run a FlatGraph from one layer's output to the model output (FlatGraph.resume_plan).

    steps: the steps that depend on the layer's output, in order; below: the tensors (KerasTensors)
    those steps also read that do not depend on it (computed once from the clean image: skip
    connections from below the layer, a nested model's other inputs, ...), in a fixed order."""

    path: str
    index: int               # the layer's step in FlatGraph._steps
    layer_out: object        # the layer's (first) output KerasTensor
    steps: tuple
    below: tuple


def _resume_plan(graph: "FlatGraph", path: str) -> ResumePlan:
    steps = graph._steps
    at = [i for i, (kind, _, _, p) in enumerate(steps) if kind == "call" and p == path]
    if not at:
        raise LayerError(f"no layer '{path}' to resume the model from")
    i = at[-1]   # a layer called twice: its last call, the one a tap returns
    node = steps[i][1]
    if not node.outputs:
        raise LayerError(f"layer '{path}' has no output to resume from")
    live = {id(t) for t in node.outputs}
    keep, read = [], {}
    for kind, a, b, p in steps[i + 1:]:
        if kind == "alias":
            if b in live:
                live.add(a)
                keep.append((kind, a, b, p))
            continue
        ins = list(a.input_tensors)
        if any(id(t) in live for t in ins):
            keep.append((kind, a, b, p))
            live.update(id(t) for t in a.outputs)
            for t in ins:
                read.setdefault(id(t), t)
    below = [t for k, t in read.items() if k not in live]
    if graph._output_id not in live:   # the output does not depend on the layer: a constant
        below.append(graph._output_tensor)
    return ResumePlan(path, i, node.outputs[0], tuple(keep), tuple(below))

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
            args, kwargs = node.arguments.fill_in(values)
            if "training" in getattr(op, "_call_context_args", ()):
                kwargs["training"] = False
            call: Callable = op
            if logits and path == self.head_path and self.head_activation != "none":
                call = _identity if isinstance(op, keras.layers.Softmax) else linear_twin(op)
            outs = call(*args, **kwargs)
            flat = outs if isinstance(outs, (list, tuple)) else [outs]
            if guided and _is_relu(op):
                flat = [_guided_gate(t) for t in flat]
            for t, v in zip(node.outputs, flat):
                values[id(t)] = v
            if path in tapset:
                found[path] = flat[0]
        return values[self._output_id], found


def _identity(x, *args, **kwargs):
    return x

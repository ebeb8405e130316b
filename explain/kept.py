"""Kept passes: a pass traced once is saved, and the next process loads it instead of tracing.

Tracing a pass runs every Keras layer's Python code to build the graph (ResNet50V2's ``cam``
pass: ~1.0 s, then ~0.5 s of graph optimisation on its first run). What tracing produces is a
plain GraphDef whose only outside inputs are the model's variables, so it is kept as that: the
GraphDef (protocol buffer, no code) plus a JSON card naming which model variable each captured
input was (by its Keras path), the input and output tensors and the output nesting. Loading
imports the GraphDef into a function that captures this process's variables (~0.2 s) and skips
the trace; the weights themselves are never stored (they stay the loaded model's).

A kept pass is found by a fingerprint of everything the graph depends on: the model's
architecture (its config and its variables' paths, shapes and dtypes, not their values), the
pass (kind, layer, score, input size), the source of the modules that build passes, and the
TensorFlow and Keras versions. Files live in a private folder (owner-only; see
`private_folder`); a file is checked against the SHA-256 its card records and its ops against
a list of ops that touch files or run Python, so a damaged or planted file is dropped (one log
line) and the pass traced as if nothing had been kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import tensorflow as tf

from explain.private import private_folder

log = logging.getLogger("camlens.kept")

#: Ops a pass never needs and a planted graph could abuse (file access, Python callbacks).
REFUSED_OPS = frozenset({
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile", "WriteFile", "MatchingFiles",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    "ShardedFilename", "ImmutableConst", "LoadAndRemapMatrix", "DebugIdentity", "DebugIdentityV2",
    "DebugIdentityV3", "PrintV2", "Print", "WholeFileReader", "WholeFileReaderV2",
})
_SOURCES = ("passes.py", "graph.py", "formulas.py")   # the modules a pass's graph comes from
#: The folder's size limit: past it, the least recently used passes go (ResNet50V2's ``cam``
#: pass is 0.5 MB, efficientnet-lite0's passes 0.1-0.3 MB).
MAX_BYTES = 256 * 2**20


def model_fingerprint(model) -> str | None:
    """What a model's pass graphs depend on: architecture and variable specs (not values), library
    versions and the pass-building source. None when the model has no serialisable config (a
    subclassed model): its passes are then always traced."""
    try:
        config = json.dumps(model.get_config(), sort_keys=True, default=repr)
    except Exception:  # noqa: BLE001 - get_config is optional for subclassed models
        return None
    import keras

    here = Path(__file__).resolve().parent
    parts = [config, repr([(w.path, tuple(w.shape), str(w.dtype)) for w in model.weights]),
             tf.__version__, keras.__version__, *((here / name).read_text() for name in _SOURCES)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class KeptPasses:
    """The kept passes of one model in `folder` (see the module docstring)."""

    def __init__(self, folder: Path | str, model, max_bytes: int = MAX_BYTES):
        self.folder = private_folder(Path(folder))
        self.max_bytes = max_bytes
        self.fingerprint = model_fingerprint(model)
        # Keras variable path -> the tf.Variable behind it (what a captured handle is matched with).
        self._variables = {w.path: _tf_variable(w) for w in model.weights}

    def _stem(self, key: tuple) -> Path:
        digest = hashlib.sha256(f"{self.fingerprint}\0{key!r}".encode()).hexdigest()[:40]
        return self.folder / digest

    def load(self, key: tuple, signature: list):
        """The kept pass for `key` as a callable with the traced pass's inputs and outputs, or None
        (never kept, or dropped because damaged, planted or out of date)."""
        if self.fingerprint is None:
            return None
        stem = self._stem(key)
        card_path, graph_path = stem.with_suffix(".json"), stem.with_suffix(".pb")
        if not card_path.exists():
            return None
        try:
            card = json.loads(card_path.read_text())
            data = graph_path.read_bytes()
            if hashlib.sha256(data).hexdigest() != card["sha256"] or card["key"] != repr(key):
                raise ValueError("its checksum or key does not match its card")
            graph = tf.compat.v1.GraphDef()
            graph.ParseFromString(data)
            refused = {node.op for node in graph.node} & REFUSED_OPS
            refused |= {node.op for f in graph.library.function for node in f.node_def} & REFUSED_OPS
            if refused:
                raise ValueError(f"it holds ops a pass never uses ({', '.join(sorted(refused))})")
            captures = [(name, self._variables[path]) for name, path in card["captures"]]
            loaded = _imported(graph, card, captures, signature)
            os.utime(graph_path)   # recently used: the last to be pruned
            return loaded
        except Exception as error:  # noqa: BLE001 - anything wrong with a kept pass: trace instead
            log.warning("kept pass %s dropped (%s: %s); tracing it", stem.name, type(error).__name__, error)
            for path in (card_path, graph_path):
                path.unlink(missing_ok=True)
            return None

    def keep(self, key: tuple, concrete) -> bool:
        """Save a traced concrete function; False (nothing written) when it captures anything but
        this model's variables or takes nested inputs."""
        if self.fingerprint is None:
            return False
        by_handle = {id(v.handle): path for path, v in self._variables.items()}
        captures = [(internal.name, by_handle.get(id(external))) for external, internal in concrete.graph.captures]
        args = concrete.structured_input_signature[0]
        if any(path is None for _, path in captures) or not all(isinstance(a, tf.TensorSpec) for a in args):
            return False
        data = concrete.graph.as_graph_def().SerializeToString()
        card = {"key": repr(key), "sha256": hashlib.sha256(data).hexdigest(), "captures": captures,
                "inputs": [t.name for t in concrete.inputs[:len(args)]],
                "outputs": [t.name for t in tf.nest.flatten(concrete.structured_outputs)],
                "nesting": _nesting(concrete.structured_outputs),
                "tf": tf.__version__}
        stem = self._stem(key)
        # The graph first, then the card that vouches for it: a reader never sees a card without its graph.
        _write(stem.with_suffix(".pb"), data)
        _write(stem.with_suffix(".json"), json.dumps(card).encode())
        self._prune()
        return True

    def _prune(self) -> None:
        """Least recently used passes out until the folder is within max_bytes (a card goes with its graph)."""
        graphs = sorted(self.folder.glob("*.pb"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in graphs)
        for graph in graphs[:-1]:   # never the one just written
            if total <= self.max_bytes:
                break
            total -= graph.stat().st_size
            graph.with_suffix(".json").unlink(missing_ok=True)
            graph.unlink(missing_ok=True)


def _tf_variable(weight):
    """The tf.Variable behind a Keras 3 variable (or the variable itself)."""
    return getattr(weight, "value", weight) if not isinstance(weight, tf.Variable) else weight


def _nesting(structure):
    """Output nesting as JSON: lists for tuples/lists, null for a tensor."""
    if isinstance(structure, (tuple, list)):
        return [_nesting(s) for s in structure]
    return None


def _pack(nesting, flat: list):
    """Rebuild the outputs' nesting (tuples) from the flat list, in order."""
    items = iter(flat)

    def build(n):
        return tuple(build(s) for s in n) if isinstance(n, list) else next(items)

    return build(nesting)


def _imported(graph, card: dict, captures: list, signature: list):
    """A function of the pass's inputs that runs the kept graph on this process's variables."""
    def body(*args):
        inputs = dict(zip(card["inputs"], args))
        current = tf.compat.v1.get_default_graph()
        for name, variable in captures:
            inputs[name] = current.capture(variable.handle)
        return tf.graph_util.import_graph_def(graph, input_map=inputs, return_elements=card["outputs"], name="")

    wrapped = tf.compat.v1.wrap_function(body, signature)
    nesting = card["nesting"]

    def run(*args):
        return _pack(nesting, wrapped(*args))

    run.kept = True   # how tests and logs tell a loaded pass from a traced one
    return run


def _write(path: Path, data: bytes) -> None:
    """Atomic, owner-only write (a reader sees the old file or the whole new one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

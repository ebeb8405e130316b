"""The registry: listing, bundled models offline with their accuracy, LRU, single flight."""
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from models import ModelInfo, ModelUnavailable, Registry, UnknownModel
from models.scenes import CLASSES
from models.zoo import ZOO

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture
def registry(keras_home):
    return Registry()


def _accuracy(explainer, images, labels) -> float:
    return float(np.mean([explainer.predict(im, top=1)[0].index == y
                          for im, y in zip(images, labels)]))


def test_list_is_available_first_then_package_bundled_zoo_user(keras_home, user_dir):
    infos = Registry(models_dir=user_dir).list()
    assert all(isinstance(i, ModelInfo) for i in infos)
    available = [i.available for i in infos]
    assert available == sorted(available, reverse=True) and True in available
    kinds = ["package", "bundled", "keras", "user"]
    for group in (True, False):
        sources = [i.source for i in infos if i.available == group]
        assert sources == sorted(sources, key=kinds.index)
    assert [i.name for i in infos[:3]] == ["efficientnet-lite0", "vehicles", "vehicles-shortcut"]
    assert [i.name for i in infos if i.source == "keras"] == [z.name for z in ZOO]
    assert {i.name for i in infos if i.source == "package"} == {
        "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"}
    assert len({i.name for i in infos}) == len(infos)
    for info in infos:
        assert info.available == (info.reason is None)


def test_domain_says_what_inputs_a_model_knows(keras_home, user_dir):
    (user_dir / "digits.keras.json").write_text(json.dumps({"domain": "handwritten digits"}))
    infos = {i.name: i for i in Registry(models_dir=user_dir).list()}
    assert infos["vehicles"].domain == infos["vehicles-shortcut"].domain == "scenes"
    assert infos["resnet50"].domain == infos["efficientnet-lite0"].domain == "photos"
    assert infos["good.keras"].domain is None
    assert infos["digits.keras"].domain == "handwritten digits"
    (user_dir / "digits.keras.json").write_text(json.dumps({"domain": 3}))
    reason = {i.name: i for i in Registry(models_dir=user_dir).list()}["digits.keras"].reason
    assert "domain" in reason and "string" in reason


def test_default_model_is_the_first_available(keras_home, monkeypatch):
    reg = Registry()
    assert reg.default_model() == "efficientnet-lite0"
    monkeypatch.setattr(Registry, "list", lambda self: [])
    assert reg.default_model() is None


def test_zoo_without_cached_weights_names_the_file_and_the_folder(registry, keras_home):
    zoo = {i.name: i for i in registry.list() if i.source == "keras"}
    assert set(zoo) == {"resnet50v2", "resnet50", "vgg16", "inceptionv3", "mobilenetv2",
                        "efficientnetb0", "xception", "densenet121", "mobilenet-0.25",
                        "mobilenet-0.5", "mobilenet-0.75", "mobilenet-1"}
    for info in zoo.values():
        assert not info.available and str(keras_home / "models") in info.reason
        assert info.num_classes == 1000 and info.channels == 3 and info.card
    assert "mobilenet_2_5_224_tf.h5" in zoo["mobilenet-0.25"].reason
    assert "resnet50_weights_tf_dim_ordering_tf_kernels.h5" in zoo["resnet50"].reason
    assert zoo["inceptionv3"].input_size == (299, 299)
    defaults = {n: zoo[n].default_layer for n in ("resnet50", "resnet50v2", "vgg16",
                                                  "inceptionv3", "mobilenet-0.5")}
    assert defaults == {"resnet50": "conv5_block3_out", "resnet50v2": "post_relu",
                        "vgg16": "block5_conv3", "inceptionv3": "mixed10",
                        "mobilenet-0.5": "conv_pw_13_relu"}
    with pytest.raises(ModelUnavailable, match="mobilenet_7_5_224_tf.h5"):
        registry.explainer("mobilenet-0.75")


def test_unknown_name_is_a_key_error_with_a_message(registry):
    with pytest.raises(KeyError) as err:
        registry.info("nope")
    assert isinstance(err.value, UnknownModel) and str(err.value) == "No model named 'nope'."
    with pytest.raises(UnknownModel):
        registry.explainer("nope")


def test_bundled_files_are_small_and_described_by_their_sidecars():
    for name in ("vehicles", "vehicles-shortcut"):
        assert (MODELS / f"{name}.keras").stat().st_size <= 5 * 2**20
        side = json.loads((MODELS / f"{name}.keras.json").read_text())
        assert side["labels"] == list(CLASSES) and side["preprocessing"] == "0-1"
        assert side["domain"] == "scenes"
        assert (MODELS / side["card"]).is_file()


def test_vehicles_loads_offline_and_meets_its_accuracy(registry, fresh_scenes):
    info = registry.info("vehicles")
    assert info.available and info.source == "bundled" and info.num_classes == len(CLASSES)
    assert info.default_layer == "backbone/block4_relu2" and "Accuracy" in info.card
    ex = registry.explainer("vehicles")
    assert ex.labels == list(CLASSES) and ex.input_size == (96, 96)
    assert ex.default_layer == "backbone/block4_relu2"
    images, labels = fresh_scenes(200, size=160)
    assert _accuracy(ex, images, labels) >= 0.95


def test_shortcut_model_fails_off_its_shortcut(registry, fresh_scenes):
    ex = registry.explainer("vehicles-shortcut")
    on = _accuracy(ex, *fresh_scenes(150, size=128, confounded=True))
    off = _accuracy(ex, *fresh_scenes(150, size=128, confounded=False))
    assert on >= 0.9
    assert off <= on - 0.3, (on, off)
    assert "shortcut" in registry.info("vehicles-shortcut").card.lower()


def test_shortcut_looks_at_the_background_and_vehicles_at_the_vehicles(registry):
    """Grad-CAM mass inside the ground-truth mask, relative to the mask's area (1 = no
    preference): the shortcut is visible to the method the app exists for."""
    from models.scenes import make_scene

    def enrichment(ex):
        ratios = []
        for i in range(12):
            scene = make_scene(7_500_000 + i, 128, confounded=False)
            heat = ex.explain(scene.image, ["gradcam"])["gradcam"].heatmap
            ratios.append((heat * scene.mask).sum() / max(heat.sum(), 1e-9) / scene.mask.mean())
        return float(np.mean(ratios))

    assert enrichment(registry.explainer("vehicles")) > 2.0
    assert enrichment(registry.explainer("vehicles-shortcut")) < 1.5


def test_lru_keeps_at_most_cache_size_models(keras_home):
    reg = Registry(cache_size=1)
    first = reg.explainer("vehicles")
    assert reg.explainer("vehicles") is first and reg.loaded() == ["vehicles"]
    reg.explainer("vehicles-shortcut")
    assert reg.loaded() == ["vehicles-shortcut"]
    assert reg.explainer("vehicles") is not first and reg.loads == 3
    with pytest.raises(ValueError):
        Registry(cache_size=0)


def test_two_threads_asking_at_once_load_once(keras_home, user_dir):
    reg = Registry(models_dir=user_dir)
    reg.list()
    barrier = threading.Barrier(4)
    got, errors = [], []

    def ask(name):
        barrier.wait()
        try:
            got.append(reg.explainer(name))
        except ModelUnavailable as e:
            errors.append(str(e))

    threads = [threading.Thread(target=ask, args=(n,)) for n in
               ("vehicles", "vehicles", "lambda.keras", "lambda.keras")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 2 and got[0] is got[1]
    assert len(errors) == 2 and "Lambda" in errors[0] and errors[0] == errors[1]
    assert reg.loads == 1 and reg.loaded() == ["vehicles"]


def test_a_second_registry_loads_the_kept_passes_of_the_first(keras_home, tmp_path):
    """The app's restart (or a second worker): the warm-up passes a first registry traced are
    loaded by the next one from passes_dir, with the same maps."""
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    first = Registry(passes_dir=tmp_path / "passes").explainer("vehicles")
    expected = first.explain(image, ["gradcam", "gradients"])
    second = Registry(passes_dir=tmp_path / "passes").explainer("vehicles")
    got = second.explain(image, ["gradcam", "gradients"])
    loaded = [key for key, fn in second.passes._fns.items() if getattr(fn, "kept", False)]
    assert {key[0] for key in loaded} >= {"forward", "cam", "grad"}, second.passes._fns
    for m in ("gradcam", "gradients"):
        np.testing.assert_allclose(got[m].heatmap, expected[m].heatmap, atol=1e-5)

"""Warm passes: each pass is traced once (per-key single flight) and a pass being traced never
holds up another; no pass retraces for a new image size, batch size or mask resolution."""
import threading
import time

import numpy as np
import pytest

from explain import Explainer
from explain_testkit import gap_cnn, random_image


@pytest.fixture
def explainer():
    return Explainer(gap_cnn(seed=5), preprocess=lambda x: x / 255.0)


def test_a_pass_being_traced_does_not_block_another(explainer, monkeypatch):
    """While `cam` is (slowly) being traced in one thread, `forward` is traced and answered in
    another; two threads asking for the same pass share one trace."""
    passes = explainer.passes
    build = passes._build
    cam_started, release = threading.Event(), threading.Event()
    builds = []

    def slow_build(kind, layer, score):
        builds.append(kind)
        if kind == "cam":
            cam_started.set()
            assert release.wait(60), "the test never released the cam trace"
        return build(kind, layer, score)

    monkeypatch.setattr(passes, "_build", slow_build)
    x = np.zeros((1, 32, 32, 3), np.float32)
    cam_results = []
    workers = [threading.Thread(target=lambda: cam_results.append(
        passes.layer_pass(x, explainer.default_layer, None))) for _ in range(2)]
    for w in workers:
        w.start()
    assert cam_started.wait(30)
    start = time.perf_counter()
    out = passes.forward(x)            # must not wait for the cam trace
    took = time.perf_counter() - start
    assert out.shape == (1, 4)
    assert not release.is_set() and all(w.is_alive() for w in workers)
    assert ("forward", None, "logit") in passes.traced()
    assert ("cam", explainer.default_layer, "logit") not in passes.traced()
    release.set()
    for w in workers:
        w.join(60)
    assert len(cam_results) == 2
    assert builds.count("cam") == 1 and builds.count("forward") == 1
    assert took < 30


def test_a_failed_trace_is_shared_then_retried(explainer, monkeypatch):
    passes = explainer.passes
    build = passes._build
    calls = []

    def failing(kind, layer, score):
        calls.append(kind)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return build(kind, layer, score)

    monkeypatch.setattr(passes, "_build", failing)
    with pytest.raises(RuntimeError, match="boom"):
        passes.fn("forward")
    assert passes.traced() == []
    assert passes.fn("forward") is passes.fn("forward") and calls == ["forward", "forward"]


def test_no_retracing_across_image_batch_and_mask_sizes(explainer, rng, monkeypatch):
    """Count Python executions of the model inside the passes (they happen only while tracing):
    after the first call of each pass, new image sizes, batch sizes and mask resolutions add none."""
    graph = explainer.graph
    runs = {"n": 0}
    run = graph.run

    def counting_run(*args, **kwargs):
        runs["n"] += 1
        return run(*args, **kwargs)

    monkeypatch.setattr(graph, "run", counting_run)
    layer = explainer.default_layer
    x1 = explainer.prepare(random_image(rng, 32, 32))
    explainer.passes.layer_pass(x1, layer, None)          # cam
    explainer.passes.input_gradients(x1, None)            # grad
    explainer.masked_outputs(x1[0:1], np.zeros_like(x1), np.ones((2, 4, 4), np.float32))  # blend
    explainer.passes.forward(x1)
    traced, first = sorted(map(str, explainer.passes.traced())), runs["n"]
    assert first == 4

    for (h, w), n in [((20, 30), 1), ((64, 64), 2), ((100, 50), 5), ((7, 200), 3)]:
        image = random_image(rng, h, w)
        xb = np.repeat(explainer.prepare(image), n, axis=0)
        A, G, out, t, _ = explainer.passes.layer_pass(xb, layer, None if n == 1 else 2)
        assert A.shape[0] == G.shape[0] == out.shape[0] == n
        g, out, _ = explainer.passes.input_gradients(xb, 1, score="logit")
        assert g.shape == xb.shape
        for mask_size, count in [(4, n), (7, 3 * n), (32, 17)]:   # 17 > batch_size: two batches
            masks = rng.random((count, mask_size, mask_size)).astype(np.float32)
            outs = explainer.masked_outputs(xb[0:1], np.zeros_like(xb[0:1]), masks, batch_size=16)
            assert outs.shape == (count, 4)
        explainer.explain(image, ["gradcam", "gradcam++", "gradients", "rise"], rise_masks=20)
        assert explainer.predict(image)
    assert sorted(map(str, explainer.passes.traced())) == traced
    assert runs["n"] == first, "a pass was traced again"

"""Published weights: resolution order, download from a local HTTP server with sha256 and size
checks, offline mode, and loading all but the classifier for another number of classes."""

import http.server
import json
import threading

import numpy as np
import pytest

import keras

import keras_attn_zoo as zoo
from helpers import sample_images
from keras_attn_zoo import weights
from keras_attn_zoo.cli import main


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        body, mode = self.server.routes.get(self.path, (None, None))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 that serves ``server.routes``; stopped after the test."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def published(tmp_path, monkeypatch):
    """resnet20:cifar10 in a manifest of a temporary repository whose weights/ lacks the file."""
    model = zoo.load("resnet20")
    source = tmp_path / "built" / "resnet20_cifar10.weights.h5"
    source.parent.mkdir()
    model.save_weights(source)
    repo = tmp_path / "repo" / "weights"
    repo.mkdir(parents=True)
    row = {"model": "resnet20", "tag": "cifar10", "file": source.name, "sha256": weights.sha256(source),
           "size": source.stat().st_size, "num_classes": 10}
    (repo / "manifest.json").write_text(json.dumps({"weights": [row]}))
    monkeypatch.setattr(weights, "MANIFEST", repo / "manifest.json")
    cache = tmp_path / "home"
    monkeypatch.setenv("KERAS_ATTN_ZOO_HOME", str(cache))
    return {"model": model, "bytes": source.read_bytes(), "row": row, "repo": repo,
            "cached": cache / "weights" / source.name}


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_caches(published, server, monkeypatch):
    server.routes["/mirror/resnet20_cifar10.weights.h5"] = (published["bytes"], "ok")
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url + "/mirror/")
    x = sample_images(2)
    loaded = zoo.load("resnet20", weights="cifar10")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), published["model"].predict(x, verbose=0))
    assert _leftovers(published["cached"].parent) == ["resnet20_cifar10.weights.h5"]  # no .part file
    zoo.load("resnet20", weights="cifar10")
    assert server.requests == ["/mirror/resnet20_cifar10.weights.h5"]  # the cache served the second
    assert zoo.list_models(pretrained=True) == ["resnet20"]


def test_a_tampered_download_is_refused_and_nothing_is_saved(published, server, monkeypatch):
    tampered = bytearray(published["bytes"])
    tampered[len(tampered) // 2] ^= 0xFF
    server.routes["/resnet20_cifar10.weights.h5"] = (bytes(tampered), "ok")
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url)
    with pytest.raises(ValueError, match="sha256 .* not the published one.*Nothing was saved"):
        zoo.load("resnet20", weights="cifar10")
    assert _leftovers(published["cached"].parent) == []


@pytest.mark.parametrize("mode,match", [
    ("cut", "cut short \\(truncated after"),  # the connection closes before Content-Length
    ("short", "truncated or damaged: .* bytes, the manifest says"),  # a complete, short file
])
def test_a_truncated_download_is_refused(published, server, monkeypatch, mode, match):
    body = published["bytes"] if mode == "cut" else published["bytes"][:1000]
    server.routes["/resnet20_cifar10.weights.h5"] = (body, mode)
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url)
    with pytest.raises(ValueError, match=match):
        weights.download("resnet20", "cifar10")
    assert _leftovers(published["cached"].parent) == []


def test_offline_mode_never_touches_the_network(published, server, monkeypatch):
    server.routes["/resnet20_cifar10.weights.h5"] = (published["bytes"], "ok")
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url)
    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="KERAS_ATTN_ZOO_OFFLINE forbids downloading.*keras-attn-zoo download resnet20:cifar10"):
        zoo.load("resnet20", weights="cifar10")
    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="KERAS_ATTN_ZOO_OFFLINE must be"):
        zoo.load("resnet20", weights="cifar10")
    assert server.requests == []
    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "true")
    (published["repo"] / "resnet20_cifar10.weights.h5").write_bytes(published["bytes"])
    assert weights.resolve("resnet20", "cifar10") == str(published["repo"] / "resnet20_cifar10.weights.h5")


def test_unreachable_or_unknown_locations_are_clear_errors(published, server, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no download location is known: set KERAS_ATTN_ZOO_WEIGHTS_URL"):
        zoo.load("resnet20", weights="cifar10")
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url + "/nothing-here")
    with pytest.raises(OSError, match="Could not download .*/nothing-here/resnet20_cifar10.weights.h5.*404"):
        zoo.load("resnet20", weights="cifar10")
    monkeypatch.delenv("KERAS_ATTN_ZOO_WEIGHTS_URL")
    server.routes["/row/file.h5"] = (published["bytes"], "ok")
    row = {**published["row"], "url": server.url + "/row/file.h5"}  # a row may carry its own URL
    weights.write_manifest([row], weights.MANIFEST)
    assert weights.download("resnet20") == published["cached"]


def test_resolution_order_is_cache_then_repository(published, server):
    repo_copy = published["repo"] / "resnet20_cifar10.weights.h5"
    repo_copy.write_bytes(published["bytes"])
    assert weights.resolve("resnet20", "cifar10") == str(repo_copy)
    published["cached"].parent.mkdir(parents=True)
    published["cached"].write_bytes(published["bytes"])
    assert weights.resolve("resnet20", "cifar10") == str(published["cached"])
    published["cached"].write_bytes(published["bytes"][:-10])
    with pytest.raises(ValueError, match="resnet20_cifar10.weights.h5 is truncated: .*Delete it and run `keras-attn-zoo download resnet20:cifar10`"):
        weights.resolve("resnet20", "cifar10")
    tampered = bytearray(published["bytes"])
    tampered[-1] ^= 1
    published["cached"].unlink()
    repo_copy.write_bytes(bytes(tampered))
    with pytest.raises(ValueError, match="is damaged: its sha256 .*git checkout weights/"):
        weights.resolve("resnet20", "cifar10")
    assert server.requests == []


def test_other_num_classes_loads_all_but_the_classifier(published):
    (published["repo"] / "resnet20_cifar10.weights.h5").write_bytes(published["bytes"])
    full = published["model"]
    with pytest.warns(UserWarning, match="except 'predictions': the file has 10 classes, the model 5"):
        five = zoo.load("resnet20", weights="cifar10", num_classes=5)
    for layer in five.layers:
        expected = full.get_layer(layer.name).get_weights()
        if layer.name == "predictions":
            assert layer.get_weights()[0].shape == (64, 5)
        else:
            for a, b in zip(layer.get_weights(), expected):
                np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match="except predictions, which the model does not have"):
        features = zoo.load("resnet20", weights="cifar10", include_top=False, pooling="avg")
    x = sample_images(2)
    pooled = keras.Model(full.inputs, full.get_layer("head_pool").output).predict(x, verbose=0)
    np.testing.assert_allclose(features.predict(x, verbose=0), pooled, rtol=1e-6, atol=1e-6)


def test_cli_download(published, server, monkeypatch, capsys):
    server.routes["/resnet20_cifar10.weights.h5"] = (published["bytes"], "ok")
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url)
    assert main(["download", "resnet20:cifar10"]) == 0
    assert capsys.readouterr().out.strip() == str(published["cached"])
    assert main(["download", "resnet20"]) == 0  # the only tag
    assert main(["download", "resnet20:imagenet"]) == 2
    assert "No published weights 'imagenet' for 'resnet20' (published tags: 'cifar10')" in capsys.readouterr().err
    assert main(["download", "resnet32"]) == 2
    assert "resnet32 has no published weights" in capsys.readouterr().err


# The published CIFAR-10 weights and their top-1 on all 10,000 JPEG test images, as measured by
# `keras-attn-zoo evaluate NAME --weights cifar10 --data ... --record`.
BUNDLED = {"abn_resnet20": 0.8503, "fa_resnet20": 0.8536, "fa_se_resnet20": 0.8494, "resnet20": 0.8477, "se_resnet20": 0.8504}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_bundled_weights_load_offline_and_classify_real_test_images(name, monkeypatch):
    """Each published file: verified, offline, with its recorded normalisation, on real CIFAR-10
    test images (200 of them; the full-split numbers are `keras-attn-zoo evaluate --all`'s)."""
    from helpers import cifar_sample
    from keras_attn_zoo.data.preprocessing import preprocess_input

    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "1")
    row = [r for r in weights.published_rows() if (r["model"], r["tag"]) == (name, "cifar10")][0]
    assert row["accuracy"]["top1"] == BUNDLED[name] and row["accuracy"]["images"] == 10_000
    model = zoo.load(name, weights="cifar10")
    x, y = cifar_sample(per_class=20, split="test")
    probs = model.predict(preprocess_input(model, x * 255.0, weights="cifar10"), verbose=0)
    assert (probs.argmax(axis=1) == y).mean() >= 0.75


def test_every_published_weight_is_pinned_here_with_its_training_log():
    rows = weights.published_rows()
    assert sorted(r["model"] for r in rows) == sorted(BUNDLED)
    for row in rows:  # one line per epoch trained, and the last one's validation is the row's
        lines = (weights.MANIFEST.parent / row["training_log"]).read_text().splitlines()
        assert len(lines) == 1 + row["training"]["epochs_completed"]
        last = dict(zip(lines[0].split(","), lines[-1].split(",")))
        assert round(float(last["val_accuracy"]), 4) == row["accuracy"]["top1"]

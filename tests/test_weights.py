"""Published weights: resolution order, download from a local HTTP server with sha256 and size
checks, offline mode, and loading all but the classifier for another number of classes."""

import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

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
        if mode != "endless":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.close_connection = True
        try:
            if mode == "endless":  # no Content-Length, and more bytes than any manifest says
                while True:
                    self.wfile.write(body)
            elif mode == "slow":  # 1 KB every 20 ms
                for start in range(0, len(body), 1024):
                    self.wfile.write(body[start:start + 1024])
                    self.wfile.flush()
                    time.sleep(0.02)
            else:
                self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
        except OSError:  # the client stopped reading
            pass

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
    published["cached"].write_bytes(published["bytes"][:-10])  # damaged in the cache: replaced
    assert weights.resolve("resnet20", "cifar10") == str(published["cached"])
    assert published["cached"].read_bytes() == published["bytes"]
    tampered = bytearray(published["bytes"])
    tampered[-1] ^= 1
    published["cached"].unlink()
    repo_copy.write_bytes(bytes(tampered))
    with pytest.raises(ValueError, match="is damaged: its sha256 .*git checkout weights/"):
        weights.resolve("resnet20", "cifar10")
    assert server.requests == []


def test_a_damaged_cached_file_is_replaced_by_the_verified_bundled_copy(published, capsys):
    repo_copy = published["repo"] / "resnet20_cifar10.weights.h5"
    repo_copy.write_bytes(published["bytes"])
    published["cached"].parent.mkdir(parents=True)
    tampered = bytearray(published["bytes"])
    tampered[100] ^= 1
    published["cached"].write_bytes(bytes(tampered))
    capsys.readouterr()
    assert weights.resolve("resnet20", "cifar10") == str(published["cached"])
    err = capsys.readouterr().err
    assert "resnet20_cifar10.weights.h5 is damaged: its sha256 is" in err
    assert f"Replaced it with the verified copy {repo_copy}" in err
    assert published["cached"].read_bytes() == published["bytes"]
    assert repo_copy.read_bytes() == published["bytes"]  # the bundled copy is untouched
    assert _leftovers(published["cached"].parent) == ["resnet20_cifar10.weights.h5"]


def test_download_replaces_a_damaged_cached_file(published, server, monkeypatch, capsys):
    published["cached"].parent.mkdir(parents=True)
    published["cached"].write_bytes(published["bytes"][:-10])
    with pytest.raises(ValueError, match="is truncated: .*Run `keras-attn-zoo download resnet20:cifar10` to replace it"):
        weights.resolve("resnet20", "cifar10")  # no bundled copy: load says how to fix it
    server.routes["/resnet20_cifar10.weights.h5"] = (published["bytes"], "ok")
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url)
    capsys.readouterr()
    assert weights.download("resnet20", "cifar10") == published["cached"]
    err = capsys.readouterr().err
    assert "resnet20_cifar10.weights.h5 is truncated: it has" in err and "Downloading it again" in err
    assert published["cached"].read_bytes() == published["bytes"]
    assert server.requests == ["/resnet20_cifar10.weights.h5"]


def test_a_server_sending_more_than_the_manifest_says_is_stopped(published, server, monkeypatch):
    """A server once sent 41 MB for a 1.4 MB file: refuse an announced size above the
    manifest's at once, and stop reading an unannounced stream as soon as it passes it."""
    monkeypatch.setenv("KERAS_ATTN_ZOO_WEIGHTS_URL", server.url)
    server.routes["/resnet20_cifar10.weights.h5"] = (published["bytes"] * 30, "ok")
    with pytest.raises(ValueError, match=f"more than the manifest's {published['row']['size']:,} bytes .*it announced .*nothing was saved"):
        weights.download("resnet20", "cifar10")
    server.routes["/resnet20_cifar10.weights.h5"] = (published["bytes"], "endless")  # never ends
    start = time.monotonic()
    with pytest.raises(ValueError, match="more than the manifest's .* bytes .*at least .*Reading stopped"):
        weights.download("resnet20", "cifar10")
    assert time.monotonic() - start < 10
    assert _leftovers(published["cached"].parent) == []


def test_a_download_has_an_overall_deadline(published, server, monkeypatch):
    server.routes["/slow.h5"] = (published["bytes"], "slow")  # about 25 s in all
    row = published["row"]
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish within its deadline of 0.5 s .*bytes received.*KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE"):
        weights.download_file(server.url + "/slow.h5", published["cached"], row["sha256"], row["size"], deadline_s=0.5)
    assert time.monotonic() - start < 5
    monkeypatch.setenv("KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE", "0.3")
    with pytest.raises(TimeoutError, match="deadline of 0.3 s"):
        weights.download_file(server.url + "/slow.h5", published["cached"], row["sha256"], row["size"])
    monkeypatch.setenv("KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE", "soon")
    with pytest.raises(ValueError, match="KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE must be a positive number of seconds, got 'soon'"):
        weights.download_file(server.url + "/slow.h5", published["cached"], row["sha256"], row["size"])
    assert _leftovers(published["cached"].parent) == []


def test_a_progress_bar_on_terminals_only(published, server, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    server.routes["/resnet20_cifar10.weights.h5"] = (published["bytes"], "ok")
    row, url = published["row"], server.url + "/resnet20_cifar10.weights.h5"
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    weights.download_file(url, published["cached"], row["sha256"], row["size"])
    mb = row["size"] / 1e6
    assert f"\r[{'#' * 30}] {mb:.1f} / {mb:.1f} MB 100%\n" in terminal.getvalue()
    monkeypatch.undo()
    capsys.readouterr()
    published["cached"].unlink()
    weights.download_file(url, published["cached"], row["sha256"], row["size"])
    assert capsys.readouterr().err.strip() == f"Downloading {url} to {published['cached']}"  # no bar


def test_sigterm_mid_download_removes_the_part_file(published, server, tmp_path):
    server.routes["/slow.h5"] = (published["bytes"], "slow")
    dest, row = tmp_path / "dl" / "resnet20_cifar10.weights.h5", published["row"]
    code = ("import sys; from keras_attn_zoo import weights; "
            "weights.download_file(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))")
    child = subprocess.Popen([sys.executable, "-c", code, server.url + "/slow.h5", str(dest), row["sha256"], str(row["size"])],
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.monotonic() + 120
        while not [p for p in _leftovers(dest.parent) if p.endswith(".part") and (dest.parent / p).stat().st_size > 0]:
            assert child.poll() is None and time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGTERM
    assert "Interrupted: removed the partial download" in err
    assert _leftovers(dest.parent) == []


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


# The published CIFAR-10 weights (model, tag) and their top-1 on all 10,000 JPEG test images, as
# measured by `keras-attn-zoo evaluate NAME --weights TAG --data ... --record`.
BUNDLED = {("abn_resnet20", "cifar10"): 0.8503, ("fa_resnet20", "cifar10"): 0.8757,
           ("fa_se_resnet20", "cifar10"): 0.8494, ("paya_resnet20", "cifar10"): 0.8805,
           ("paya_resnet20", "cifar10_aux"): 0.8798, ("resnet20", "cifar10"): 0.8786,
           ("resnet20", "cifar10_dat"): 0.8657, ("resnet20", "cifar10_seed1"): 0.8810,
           ("se_resnet20", "cifar10"): 0.8504}


@pytest.mark.parametrize("name, tag", sorted(BUNDLED))
def test_the_bundled_weights_load_offline_and_classify_real_test_images(name, tag, monkeypatch):
    """Each published file: verified, offline, with its recorded normalisation, on real CIFAR-10
    test images (200 of them; the full-split numbers are `keras-attn-zoo evaluate --all`'s)."""
    from helpers import cifar_sample
    from keras_attn_zoo.data.preprocessing import preprocess_input

    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "1")
    row = [r for r in weights.published_rows() if (r["model"], r["tag"]) == (name, tag)][0]
    assert row["accuracy"]["top1"] == BUNDLED[name, tag] and row["accuracy"]["images"] == 10_000
    model = zoo.load(name, weights=tag)
    x, y = cifar_sample(per_class=20, split="test")
    probs = model.predict(preprocess_input(model, x * 255.0, weights=tag), verbose=0)
    assert (probs.argmax(axis=1) == y).mean() >= 0.75


def test_every_published_weight_is_pinned_here_with_its_training_log():
    rows = weights.published_rows()
    assert sorted((r["model"], r["tag"]) for r in rows) == sorted(BUNDLED)
    for row in rows:  # one line per epoch trained, and the last one's validation is the row's
        lines = (weights.MANIFEST.parent / row["training_log"]).read_text().splitlines()
        assert len(lines) == 1 + row["training"]["epochs_completed"]
        last = dict(zip(lines[0].split(","), lines[-1].split(",")))
        assert round(float(last["val_accuracy"]), 4) == row["accuracy"]["top1"]


def test_a_damaged_file_in_a_read_only_cache_falls_back_to_the_bundled_copy(published, monkeypatch, capsys):
    repo_copy = published["repo"] / "resnet20_cifar10.weights.h5"
    repo_copy.write_bytes(published["bytes"])
    published["cached"].parent.mkdir(parents=True)
    published["cached"].write_bytes(published["bytes"][:-1])

    def read_only(source, dest):
        raise PermissionError(13, "Permission denied", str(dest))

    monkeypatch.setattr(weights, "_copy_atomically", read_only)
    capsys.readouterr()
    assert weights.resolve("resnet20", "cifar10") == str(repo_copy)
    assert f"Could not replace it ([Errno 13] Permission denied" in capsys.readouterr().err
    assert published["cached"].read_bytes() == published["bytes"][:-1]  # left as it was

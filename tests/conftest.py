import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

from helpers import extract_cifar  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run the slow tests: full-size checks, training in several processes")


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if backend != "tensorflow" and "multibackend" not in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"TensorFlow-backend test; backend is {backend}"))


@pytest.fixture(autouse=True, scope="session")
def _zoo_home(tmp_path_factory):
    """Tests never read or write the user's cache, and start online with no mirror set."""
    saved = {k: os.environ.pop(k, None) for k in ("KERAS_ATTN_ZOO_OFFLINE", "KERAS_ATTN_ZOO_WEIGHTS_URL")}
    saved["KERAS_ATTN_ZOO_HOME"] = os.environ.get("KERAS_ATTN_ZOO_HOME")
    os.environ["KERAS_ATTN_ZOO_HOME"] = str(tmp_path_factory.mktemp("zoo_home"))
    yield
    for key, value in saved.items():
        os.environ.pop(key, None)
        if value is not None:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def cifar_jpegs(tmp_path_factory):
    """15 real CIFAR-10 test JPEGs per class (150), in class folders."""
    return extract_cifar(tmp_path_factory.mktemp("cifar10"), per_class=15)

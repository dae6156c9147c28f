"""The environment variables the zoo reads, and the folders they point to, in one place.

| variable | meaning | default |
| --- | --- | --- |
| ``KERAS_ATTN_ZOO_HOME`` | the user's cache: downloaded weights, extracted data archives | ``$KERAS_HOME/keras_attn_zoo`` (``~/.keras/keras_attn_zoo``) |
| ``KERAS_ATTN_ZOO_WEIGHTS_URL`` | base URL of a weights mirror (the file name is appended) | the manifest row's ``url`` |
| ``KERAS_ATTN_ZOO_OFFLINE`` | ``1`` / ``true``: never touch the network | off |
| ``KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE`` | seconds a weights download may take in all before it is abandoned | 1800 |
| ``KERAS_ATTN_ZOO_DATA`` | a folder holding local data archives such as ``cifar10-jpeg.tar.gz`` | none |
"""

import os
from pathlib import Path

HOME_ENV = "KERAS_ATTN_ZOO_HOME"
WEIGHTS_URL_ENV = "KERAS_ATTN_ZOO_WEIGHTS_URL"
OFFLINE_ENV = "KERAS_ATTN_ZOO_OFFLINE"
DATA_ENV = "KERAS_ATTN_ZOO_DATA"
DOWNLOAD_DEADLINE_ENV = "KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE"
DEFAULT_DOWNLOAD_DEADLINE_S = 1800


def home():
    """The zoo's cache folder (not created here).

    Returns:
        ``$KERAS_ATTN_ZOO_HOME`` if set, else ``keras_attn_zoo`` under Keras' own home
        (``$KERAS_HOME``, default ``~/.keras``), as a ``Path``.
    """
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "keras_attn_zoo"


def offline():
    """Whether ``KERAS_ATTN_ZOO_OFFLINE`` forbids network access."""
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{OFFLINE_ENV} must be 1/true/yes/on or 0/false/no/off, got {value!r}.")


def download_deadline():
    """Seconds a download may take in all: ``KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE``, default 1800."""
    value = os.environ.get(DOWNLOAD_DEADLINE_ENV, "").strip()
    if not value:
        return float(DEFAULT_DOWNLOAD_DEADLINE_S)
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{DOWNLOAD_DEADLINE_ENV} must be a positive number of seconds, got {value!r}.")
    return seconds

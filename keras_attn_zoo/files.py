"""Files written whole or not at all.

:func:`replacing` is how the zoo writes a single file that a kill must never leave half-written
(weights, checkpoints, logs, records, the manifest, caches): the content goes to a temporary name
beside the file, which is renamed over it only once it is complete. (Writes of two files together,
streamed downloads and export folders have their own two-step writes.) :func:`write_page` writes
a measurement page: its markdown and a ``.json`` of the same figures beside it.
"""

import contextlib
import json
import os
import uuid
from pathlib import Path


def temporary_name(path):
    """A hidden, unique name beside ``path`` that ends with ``path``'s own name.

    >>> temporary_name("run/log.csv").name  # doctest: +ELLIPSIS
    '....tmp.log.csv'
    """
    path = Path(path)
    return path.with_name(f".{uuid.uuid4().hex}.tmp.{path.name}")


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path beside ``path`` to write; on success it is renamed to ``path``.

    The temporary name ends with ``path``'s own name, so the suffixes that Keras and NumPy check
    (``.weights.h5``, ``.keras``, ``.npz``) are kept. If the block raises, the temporary file is
    removed and ``path`` is as it was; a kill (SIGKILL) can leave the hidden temporary file behind,
    never a partial ``path``.

    >>> with replacing("run/log.csv") as tmp:
    ...     tmp.write_text("epoch,loss\\n1,0.5\\n")  # run/log.csv appears only now, whole
    """
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_page(path, text, record):
    """Write the markdown ``text`` to ``path`` and the JSON ``record`` beside it (``.json``), each whole.

    The folder is made if needed. Returns the JSON file's path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    beside = path.with_suffix(".json")
    for target, content in ((path, text), (beside, json.dumps(record, indent=2) + "\n")):
        with replacing(target) as tmp:
            tmp.write_text(content)
    return beside

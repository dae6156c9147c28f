"""Files written whole or not at all.

:func:`replacing` is how the zoo writes a single file that a kill must never leave half-written
(weights, checkpoints, logs, records, the manifest, caches): the content goes to a temporary name
beside the file, which is renamed over it only once it is complete. (Writes of two files together,
streamed downloads and export folders have their own two-step writes.)
"""

import contextlib
import os
import uuid
from pathlib import Path


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
    path = Path(path)
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

"""What lets a training run resume after a kill at any moment, and keeps two runs apart.

- :class:`Checkpoints`: after every finished epoch whose loss is finite, the training model's
  weights with its optimizer's state, as ``<folder>/epoch-<n>.weights.h5`` (``n`` epochs
  finished). The epoch is in the file's name, so weights and epoch can never disagree; each file
  is written under a temporary name and renamed, so a kill leaves whole files only; the previous
  epoch's file is kept in case the newest one is damaged. Unlike ``keras.callbacks.BackupAndRestore``,
  nothing is deleted when ``fit`` ends or diverges: the trainer removes the folder once the
  run's record is written.
- :func:`run_lock`: one training at a time per output folder (a lock file with the pid; the lock
  of a process that no longer runs is taken over, and said so).
- :func:`write_json`, :func:`read_json`, :func:`save_weights`: atomic writes, and reads of
  resume state whose errors name the file and the fix.
- :func:`trim_log`: the epoch log keeps exactly the epochs the checkpoint holds.
- :func:`adopt_keras_backup`: the ``BackupAndRestore`` files of runs interrupted before this
  module existed become checkpoints, so those runs resume too.
"""

import contextlib
import csv
import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path

import keras

from keras_attn_zoo.files import replacing, temporary_name

LOCK_FILE = ".training.lock"
START_OVER = "run again with --overwrite (overwrite=True) to start the run over"


def finite(value):
    """Whether a number is neither NaN nor infinite."""
    return value == value and abs(value) != float("inf")


def save_weights(model, path):
    """``model.save_weights(path)`` under a temporary name, then renamed: never a partial file."""
    with replacing(path) as tmp:
        model.save_weights(tmp)


def write_json(path, value):
    """Write ``value`` as JSON under a temporary name, then rename: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2) + "\n")


def read_json(path, what, key=None):
    """A JSON file of a run's resume state; a damaged one is a ``ValueError`` naming it and the fix.

    Args:
        path: the file.
        what: what it is, for the message (e.g. "the best epoch so far").
        key: a key it must have. Defaults to none.
    """
    try:
        value = json.loads(Path(path).read_text())
        if key is not None and key not in value:
            raise KeyError(key)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} ({what}) is damaged ({type(e).__name__}: {e}): {START_OVER}, "
                         "or delete the file.") from e
    return value


def checkpoint_files(folder):
    """The checkpoints in ``folder``, newest first, as ``(epochs finished, path)``."""
    found = []
    for path in Path(folder).glob("epoch-*.weights.h5"):
        match = re.fullmatch(r"epoch-(\d+)\.weights\.h5", path.name)
        if match:
            found.append((int(match[1]), path))
    return sorted(found, reverse=True)


def checkpoint_epoch(folder):
    """The epochs finished by the newest checkpoint in ``folder``, or None (nothing is loaded)."""
    files = checkpoint_files(folder)
    return files[0][0] if files else None


class Checkpoints(keras.callbacks.Callback):
    """A run's resume state in ``folder`` (see the module's docstring).

    Put it after the callbacks that write an epoch's logs: an epoch counts as done once its
    checkpoint is written, and a kill before that repeats the epoch (:func:`trim_log` then
    drops the log's row of the unfinished attempt).

    Attributes:
        epoch: the epochs finished in the state restored or last written, or None.
        diverged: the epochs (0-based) whose loss was not finite; they were not saved.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = Path(folder)
        self.epoch = None
        self.diverged = []

    def restore(self, model):
        """Load the newest checkpoint that reads into ``model``, a compiled training model.

        A damaged newest file (truncated by a full disk, say) is reported on stderr and the
        previous one is used; :attr:`epoch` says which was loaded.

        Returns:
            The epochs finished in the loaded checkpoint, or None when there is none.

        Raises:
            ValueError: naming the files and the fix, when none can be loaded.
        """
        files = checkpoint_files(self.folder)
        if not files:
            return None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        errors = []  # (file, why)
        for epoch, path in files:
            try:
                model.load_weights(path)
            except (OSError, ValueError) as e:
                errors.append((path, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"))
                continue
            for bad, why in errors:
                print(f"WARNING: the checkpoint {bad} cannot be read ({why}); resuming from {path.name} instead",
                      file=sys.stderr)
            self.epoch = epoch
            return epoch
        raise ValueError(
            f"No checkpoint in {self.folder} can be read ({'; '.join(f'{p.name}: {why}' for p, why in errors)}): "
            f"{START_OVER}, or delete the folder. Was it written by another model or recipe?"
        )

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not finite(float(loss)):
            self.diverged.append(epoch)  # the last good checkpoint stays the newest
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, self.folder / f"epoch-{epoch + 1:04d}.weights.h5")
        self.epoch = epoch + 1
        for _, old in checkpoint_files(self.folder)[2:]:
            old.unlink(missing_ok=True)


def trim_log(path, epochs):
    """Keep only the rows of the first ``epochs`` epochs (column ``epoch``, from 1) in a CSV log.

    A kill after an epoch's row was written but before its checkpoint repeats that epoch; without
    this its row would be there twice. A log an earlier version numbered from 0 is renumbered
    from 1 first, so that a run resumed across the change keeps one numbering.
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    renumbered = bool(rows) and int(float(rows[0]["epoch"])) == 0
    if renumbered:  # written from 0 (Keras' CSVLogger) by an earlier version: count from 1 as now
        for row in rows:
            row["epoch"] = str(int(float(row["epoch"])) + 1)
    kept = [row for row in rows if int(float(row["epoch"])) <= epochs]
    if len(kept) == len(rows) and not renumbered:
        return
    write_csv(path, fields, kept)


def write_csv(path, fields, rows):
    """Write ``rows`` (dicts) as CSV with the columns ``fields``, atomically."""
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


def remove_paths(*paths):
    """Remove files and folders; missing ones are fine."""
    for path in map(Path, paths):
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def run_lock(folder):
    """Hold ``<folder>/.training.lock`` (pid and host) while a run writes into ``folder``.

    The lock of a process that no longer runs (a killed run) is taken over, with a message.

    Raises:
        ValueError: when a process that still runs holds it, or one on another host (whose
            state cannot be checked from here).
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    host = socket.gethostname()
    mine = temporary_name(lock)
    mine.write_text(json.dumps({"pid": os.getpid(), "host": host}))  # whole before it becomes the lock
    try:
        while True:
            try:
                os.link(mine, lock)  # atomic: made, or fails because the lock is held
                break
            except FileExistsError:
                pass
            try:
                holder = json.loads(lock.read_text())
                pid, holder_host = int(holder["pid"]), holder["host"]
            except FileNotFoundError:  # released meanwhile
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pid, holder_host = None, host
            if holder_host != host:
                raise ValueError(f"{folder} is in use by a training run on {holder_host} (pid {pid}): wait for "
                                 f"it to end, or use another output folder; if it no longer runs, delete {lock}.")
            if pid is not None and pid != os.getpid() and _running(pid):  # our own pid: a reused one
                raise ValueError(f"{folder} is in use by another training run (pid {pid}, {lock}): wait for it "
                                 f"to end, or use another output folder; if process {pid} is no training run (a "
                                 "reused pid), delete the lock file.")
            print(f"Taking over {lock}: " + (f"process {pid}, which held it, no longer runs" if pid is not None
                                             else "it is unreadable"), file=sys.stderr)
            lock.unlink(missing_ok=True)
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        if created:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()


def adopt_keras_backup(folder):
    """Turn the files of ``keras.callbacks.BackupAndRestore``, which runs interrupted before this
    module existed left (``latest.weights.h5`` and ``training_metadata.json``, and their
    ``.bkp`` copies), into checkpoints: the same weights, named by their epoch."""
    folder = Path(folder)
    for suffix in ("", ".bkp"):
        weights, metadata = folder / f"latest.weights.h5{suffix}", folder / f"training_metadata.json{suffix}"
        if weights.is_file() and metadata.is_file():
            epoch = read_json(metadata, "Keras' BackupAndRestore epoch", "epoch")["epoch"]
            target = folder / f"epoch-{int(epoch):04d}.weights.h5"
            if not target.exists():
                os.replace(weights, target)
                metadata.unlink()

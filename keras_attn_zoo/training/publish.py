"""Publishing a trained run: its weight file into ``weights/``, its facts into a manifest row.

The training layer's end: it reads the run's training record, checks the file loads into its
architecture (``registry.load``) and writes the row that ``weights.WeightRecord`` reads back.
"""

import datetime
import json
import math
import shutil
from pathlib import Path

from keras_attn_zoo import weights as weights_lib
from keras_attn_zoo.files import replacing
from keras_attn_zoo.registry import load
from keras_attn_zoo.training.checkpoints import trim_log


def publish(weights_file, tag, manifest=None, overwrite=False, url=None):
    """Add trained weights to the manifest: copy the file, hash it, write its row.

    Takes the output of ``keras-attn-zoo train`` (the ``.weights.h5`` file and the training
    record ``.json`` beside it), checks that the file is the one trained and loads strictly
    into its architecture, copies it into the manifest's folder as
    ``<model>_<tag>.weights.h5`` (and the run's ``training_log.csv`` as
    ``logs/<model>_<tag>.training_log.csv``) and writes the row (see ``weights/README.md``).

    Args:
        weights_file: the trained ``.weights.h5``.
        tag: the tag users will load it by, e.g. "cifar10".
        manifest: the manifest to write. Defaults to the repository's ``weights/manifest.json``.
        overwrite: replace an existing row of the same model and tag. Defaults to False.
        url: where the file will be downloadable from, if not from the default location.

    Returns:
        The manifest row (a dict).
    """
    manifest = Path(manifest) if manifest is not None else weights_lib.MANIFEST
    weights_file = Path(weights_file)
    if not isinstance(tag, str) or not weights_lib.TAG_PATTERN.fullmatch(tag) or tag.endswith(".h5"):
        raise ValueError(f"A tag is lower-case letters, digits, '_', '-' and '.', e.g. 'cifar10'; got {tag!r}.")
    if not weights_file.is_file():
        raise FileNotFoundError(f"Weights file not found: {weights_file}")
    record_file = Path(weights_lib.record_path(weights_file))
    if not record_file.is_file():
        raise FileNotFoundError(
            f"{weights_file} has no training record {record_file.name}: publish takes the output "
            "of `keras-attn-zoo train`, which writes both."
        )
    record = json.loads(record_file.read_text())
    digest = weights_lib.sha256(weights_file)
    if digest != record["sha256"]:
        raise ValueError(
            f"{weights_file} has sha256 {digest}, its training record says {record['sha256']}: "
            "the file changed after training, so the record does not describe it."
        )
    rows = weights_lib.published_rows(manifest)
    model = record["model"]
    if any(r["model"] == model and r["tag"] == tag for r in rows) and not overwrite:
        raise ValueError(f"{manifest} already has {model}:{tag}; pass overwrite=True (--overwrite) to replace it.")
    # The row must never point to a file that does not load into its architecture.
    load(model, weights=str(weights_file), num_classes=record["num_classes"],
         input_shape=tuple(record["input_shape"]))
    file_name = f"{model}_{tag}.weights.h5"
    dest = manifest.parent / file_name
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dest) as tmp:
        shutil.copyfile(weights_file, tmp)
    log = weights_file.parent / "training_log.csv"  # the per-epoch history stays with the weights
    log_name = f"logs/{model}_{tag}.training_log.csv"
    if log.is_file():
        (manifest.parent / "logs").mkdir(exist_ok=True)
        with replacing(manifest.parent / log_name) as tmp:
            shutil.copyfile(log, tmp)
        # the epochs the weights were trained for, numbered from 1 (an earlier version's log from 0)
        trim_log(manifest.parent / log_name, record["training"].get("epochs_completed", math.inf))
    row = {
        "model": model,
        "tag": tag,
        "file": file_name,
        "sha256": digest,
        "size": dest.stat().st_size,
        **{k: record[k] for k in ("num_classes", "input_shape", "class_names", "preprocessing",
                                  "dataset", "accuracy", "training")},
        **({"training_log": log_name} if log.is_file() else {}),
        "published": datetime.date.today().isoformat(),
        **({"url": url} if url else {}),
    }
    rows = [r for r in rows if not (r["model"] == model and r["tag"] == tag)] + [row]
    weights_lib.write_manifest(rows, manifest)
    return row

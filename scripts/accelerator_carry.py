"""Prepare what a lent GPU machine needs for ``scripts/accelerator_train.sh``, and print the call.

    python scripts/accelerator_carry.py resnet56 --recipe fanet_cifar
    python scripts/accelerator_carry.py resnet56 --recipe fanet_cifar --resume path/to/resnet56.checkpoint-0090-1of1.npz

Run it in the checkout that the device tool sends (the session's own; a helper's worktree is
not sent). It fills the repository's git-ignored folders (``.gitignore``: ``/.data/``, ``/.whl/``):

- ``.data/cifar10-jpeg.tar.gz``: the CIFAR-10 archive, checked by size and sha256. Its 19.6 MB
  are carried rather than decoded arrays: 60,000 images take 184 MB decoded and about 140 MB
  as a compressed ``.npz``, over the 64 MiB a call carries. The machine decodes it once, with
  Pillow, as ``keras_attn_zoo.data.load_split`` does here.
- ``.data/COMMIT``: this checkout's commit, for the run's record (the copy sent has no ``.git``).
- ``.data/resume/``: a checkpoint an earlier session brought back, if given (all its parts).
- ``.whl/``: wheels of keras, namex and optree (the versions installed here) for CPython 3.12 on
  x86-64 Linux, which that machine's image lacks; keras' other needs (numpy, h5py, ml-dtypes,
  rich, absl-py, packaging) and Pillow are in it (the device README's KINDS.md lists them).

It checks that the working tree and these fit the 64 MiB a call takes, and prints the call.
"""

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keras_attn_zoo.data.sources import KNOWN_ARCHIVES  # noqa: E402
from keras_attn_zoo.training.device_loop import read_checkpoint  # noqa: E402
from keras_attn_zoo.training.trainer import git_commit  # noqa: E402
from keras_attn_zoo.weights import sha256  # noqa: E402

ARCHIVE = "cifar10-jpeg.tar.gz"
WHEELS = ("keras", "namex", "optree")
CARRY = (".data", ".whl")
CALL_LIMIT_BYTES = 64 << 20  # a call's working tree, carried paths included
# The README of the device tool: CPython 3.12 on x86-64, manylinux platforms pip matches exactly.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def tree_bytes(root):
    """Bytes of what a call sends without ``carry``: tracked and untracked, not ignored, files."""
    names = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root / n).stat().st_size for n in names if n and (root / n).is_file())


def folder_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def check_fits(tree, carried, limit=CALL_LIMIT_BYTES):
    """Raise when the tree and the carried folders (``{name: bytes}``) exceed a call's limit."""
    total = tree + sum(carried.values())
    if total > limit:
        parts = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in carried.items())
        raise ValueError(f"A call would carry {total / 2**20:.1f} MiB (working tree {tree / 2**20:.1f} MiB, {parts}), "
                         f"over its {limit / 2**20:.0f} MiB: remove what .data/ or .whl/ does not need.")
    return total


def copy_archive(source, dest):
    size, digest = KNOWN_ARCHIVES[ARCHIVE][:2]
    if Path(source).stat().st_size != size or sha256(source) != digest:
        raise ValueError(f"{source} is not the CIFAR-10 archive the zoo knows (size {size:,}, sha256 {digest}).")
    if not (dest.is_file() and dest.stat().st_size == size and sha256(dest) == digest):
        shutil.copyfile(source, dest)


def download_wheels(folder):
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.whl"):  # one version of each: two stop the install there
        old.unlink()
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", *[f"--platform={p}" for p in PLATFORMS], "-d", str(folder), *pins]
    subprocess.run(command, check=True)
    return pins


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="the model the call will train, e.g. resnet56")
    p.add_argument("--recipe", default="fanet_cifar")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / ARCHIVE), help="the CIFAR-10 archive")
    p.add_argument("--resume", help="a checkpoint that an earlier session brought back")
    p.add_argument("--time-limit", type=int, default=480, help="seconds the training may take (default 480)")
    args = p.parse_args(argv)

    data = ROOT / ".data"
    data.mkdir(exist_ok=True)
    copy_archive(args.data, data / ARCHIVE)
    (data / "COMMIT").write_text(git_commit() + "\n")
    resume = ""
    shutil.rmtree(data / "resume", ignore_errors=True)
    if args.resume:
        read_checkpoint(args.resume)  # whole, with all its parts beside it
        (data / "resume").mkdir()
        prefix = Path(args.resume).name.rsplit("-", 1)[0]  # <name>.checkpoint-<epochs>
        for part in sorted(Path(args.resume).parent.glob(f"{prefix}-*of*.npz")):
            shutil.copyfile(part, data / "resume" / part.name)
        resume = f" --resume {(data / 'resume' / Path(args.resume).name).relative_to(ROOT)}"
    pins = download_wheels(ROOT / ".whl")
    carried = {name: folder_bytes(ROOT / name) for name in CARRY}
    total = check_fits(tree_bytes(ROOT), carried)
    print(f"Carry ready: {', '.join(pins)}; {total / 2**20:.1f} MiB of {CALL_LIMIT_BYTES / 2**20:.0f} MiB. The call:")
    command = f"bash scripts/accelerator_train.sh {args.name} --recipe {args.recipe} --time-limit {args.time_limit}{resume}"
    print(f'  run(command="{command}", carry={list(CARRY)}, timeout_s={args.time_limit + 90})')
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert an ABN authors' PyTorch checkpoint into this zoo's ``.weights.h5``.

    python scripts/convert_abn_pytorch.py model_best.pth.tar --model abn_resnet152 --tag imagenet
    python scripts/convert_abn_pytorch.py model_best.pth.tar --model abn_resnet110 -o out.weights.h5

Reads .pth[.tar] (needs torch), or .npz / .safetensors dumps of the state dict (see
keras_attn_zoo.convert.abn_pytorch for the two-line dump). With ``--tag`` the weights go to the
user's weight folder ($KERAS_ATTN_ZOO_HOME, default ~/.keras/keras_attn_zoo) with a checksum,
and ``keras_attn_zoo.load("abn_resnet152", weights="imagenet")`` finds them; with ``-o`` they
go to a file, loaded with ``weights="path/to/file.weights.h5"``. Either way a record beside the
weights (``.json``) holds the classes and the normalisation of the authors' training scripts, which
``predict``, ``explain``, ``export`` and ``evaluate`` then apply.

A .pth is a pickle: it is read with ``torch.load(weights_only=True)``, which loads tensors and
plain containers only, so a crafted file cannot run code. ``--unsafe-pickle`` reads a file that
needs more with full unpickling (it warns): only for a file from a source you trust.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--model", required=True, help="registry name, e.g. abn_resnet152")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", help="the .weights.h5 file to write")
    where.add_argument("--tag", help="install as these weights (e.g. imagenet) in the user's folder")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="read a .pth that weights_only=True refuses with full unpickling, which can "
                             "run code: only for a file from a source you trust")
    args = parser.parse_args(argv)
    if args.output and not args.output.endswith(".weights.h5"):
        parser.error("the output must end in .weights.h5")
    from keras_attn_zoo.convert.abn_pytorch import checkpoint_record, convert_abn_checkpoint
    from keras_attn_zoo.weights import install_local, record_path

    try:
        model = convert_abn_checkpoint(args.checkpoint, args.model, args.output,
                                       unsafe_pickle=args.unsafe_pickle)
        path = args.output or install_local(model, args.tag, checkpoint_record(model, args.model, args.checkpoint))
    except (ValueError, OSError, ImportError) as e:
        print(f"convert_abn_pytorch: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} and its record {record_path(path)} (the authors' normalisation): {model.name}, "
          f"{model.output_shape[-1]} classes, {len(model.weights)} weight tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert torchvision's ImageNet ResNet checkpoint (or timm's SE-ResNet) into this zoo's ``.weights.h5``.

    python scripts/convert_torchvision.py resnet50-11ad3fa6.pth --model abn_resnet50 --tag torchvision
    python scripts/convert_torchvision.py resnet18-f37072fd.pth -o resnet18.weights.h5

Get the checkpoint where there is a network, from torchvision's URL
(``torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url`` is
https://download.pytorch.org/models/resnet50-11ad3fa6.pth; ``keras_attn_zoo.registry.
TORCHVISION_RESNETS`` lists every depth's). ``--model`` is a plain ResNet (every weight,
classifier included) or an attention model of the same depth (``abn_resnet50``,
``se_resnet152``, ``abn_se_resnet152``), whose attention layers stay freshly initialised: the
command names them. Without ``--model``, the plain ResNet of the checkpoint's depth.

With ``--tag`` the weights go to the user's weight folder ($KERAS_ATTN_ZOO_HOME, default
~/.keras/keras_attn_zoo) with a checksum, and ``keras_attn_zoo.load("abn_resnet50",
weights="torchvision")`` and ``keras-attn-zoo finetune abn_resnet50 --weights torchvision`` find
them; with ``-o`` they go to a file. Either way the record beside the file holds torchvision's
ImageNet mean and std (``--mean`` / ``--std`` for a checkpoint trained with others), so predict,
explain, export and finetune normalise inputs as torchvision did.

A .pth is a pickle: it is read with ``torch.load(weights_only=True)``, which loads tensors and
plain containers only, so a crafted file cannot run code. ``--unsafe-pickle`` reads a file that
needs more with full unpickling (it warns): only for a file from a source you trust.
"""

import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="torchvision's resnetNN-xxxxxxxx.pth (or .pth.tar, .npz, .safetensors)")
    parser.add_argument("--model", help="registry name, e.g. resnet50 or abn_resnet50 (default: the plain "
                                        "ResNet of the checkpoint's depth)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", help="the .weights.h5 file to write (its record beside it)")
    where.add_argument("--tag", help="install as these weights (e.g. torchvision) in the user's folder")
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="the checkpoint's normalisation mean, of images in [0, 1] (default torchvision's)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="the checkpoint's normalisation std (default torchvision's)")
    parser.add_argument("--unsafe-pickle", action="store_true",
                        help="read a .pth that weights_only=True refuses with full unpickling, which can "
                             "run code: only for a file from a source you trust")
    args = parser.parse_args(argv)
    if args.output and not args.output.endswith(".weights.h5"):
        parser.error("the output must end in .weights.h5")
    if (args.mean is None) != (args.std is None):
        parser.error("--mean and --std go together")
    from keras_attn_zoo.convert import IMAGENET_STATS, convert_torchvision_checkpoint
    from keras_attn_zoo.normalization import ChannelStats

    try:
        stats = IMAGENET_STATS if args.mean is None else ChannelStats(tuple(args.mean), tuple(args.std))
        result = convert_torchvision_checkpoint(args.checkpoint, args.model, args.output, tag=args.tag, stats=stats,
                                                unsafe_pickle=args.unsafe_pickle)
    except (ValueError, OSError, ImportError) as e:
        print(f"convert_torchvision: error: {e}", file=sys.stderr)
        return 2
    model = result.model
    print(f"wrote {result.path}: {model.name} from {result.architecture.title} "
          f"({result.record['converted_from']['layout']} layout), {model.output_shape[-1]} classes; "
          f"normalisation mean {stats.mean}, std {stats.std}")
    if result.fresh_layers:
        fresh = sum(math.prod(w.shape) for n in result.fresh_layers for w in model.get_layer(n).weights)
        print(f"{len(result.fresh_layers)} layers the checkpoint has nothing for stay freshly initialised "
              f"({fresh:,} parameters; fine-tuning trains them): {', '.join(result.fresh_layers)}")
    else:
        print("every layer converted")
    return 0


if __name__ == "__main__":
    sys.exit(main())

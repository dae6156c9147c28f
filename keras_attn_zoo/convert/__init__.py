"""Converters from other frameworks' checkpoints to this zoo's ``.weights.h5`` files."""

from keras_attn_zoo.convert.abn_pytorch import convert_abn_checkpoint, load_state_dict, official_key
from keras_attn_zoo.convert.torchvision_resnet import (
    IMAGENET_STATS, Conversion, checkpoint_architecture, convert_torchvision_checkpoint, is_checkpoint, target_spec,
)

__all__ = [
    "IMAGENET_STATS", "Conversion", "checkpoint_architecture", "convert_abn_checkpoint",
    "convert_torchvision_checkpoint", "is_checkpoint", "load_state_dict", "official_key", "target_spec",
]

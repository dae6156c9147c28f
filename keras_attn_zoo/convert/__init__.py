"""Converters from other frameworks' checkpoints to this zoo's ``.weights.h5`` files."""

from keras_attn_zoo.convert.abn_pytorch import convert_abn_checkpoint, load_state_dict, official_key

__all__ = ["convert_abn_checkpoint", "load_state_dict", "official_key"]

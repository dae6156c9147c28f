"""Architecture families: one builder per family, the attention mechanism as an argument."""

from keras_attn_zoo.models.densenet import densenet_bc
from keras_attn_zoo.models.inception_v4 import inception_v4
from keras_attn_zoo.models.resnet import resnet, resnet_multitask_abn
from keras_attn_zoo.models.resnet_cifar import resnet_cifar
from keras_attn_zoo.models.resnext import resnext_cifar
from keras_attn_zoo.models.vgg import vgg_bn
from keras_attn_zoo.models.wrn import wide_resnet

__all__ = [
    "densenet_bc", "inception_v4", "resnet", "resnet_cifar", "resnet_multitask_abn",
    "resnext_cifar", "vgg_bn", "wide_resnet",
]

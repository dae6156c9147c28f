"""Architecture families: one builder per family, the attention mechanism as an argument."""

from keras_attn_zoo.models.inception_v4 import inception_v4
from keras_attn_zoo.models.resnet_cifar import resnet_cifar
from keras_attn_zoo.models.resnext import resnext_cifar
from keras_attn_zoo.models.vgg import vgg_bn

__all__ = ["inception_v4", "resnet_cifar", "resnext_cifar", "vgg_bn"]

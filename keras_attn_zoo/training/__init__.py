"""Training with the papers' recipes, on one device or many, and evaluation.

>>> from keras_attn_zoo.training import train
>>> record = train("resnet20", "cifar10-jpeg", "fanet_cifar", epochs=1, data_dir="/data")

TensorFlow (tf.distribute) is imported only when a TensorFlow strategy is chosen on the
TensorFlow backend; on JAX, training needs no TensorFlow.
"""

from keras_attn_zoo.training.distribute import (
    STRATEGIES,
    Distribution,
    configure_cpu_devices,
    get_distribution,
)
from keras_attn_zoo.training.evaluate import evaluate, evaluate_split, results_markdown, write_results
from keras_attn_zoo.training.finetune import FineTuneResult, fine_tune
from keras_attn_zoo.training.optimizers import CoupledSGD
from keras_attn_zoo.training.recipes import RECIPES, OneCycle, Recipe, get_recipe, learning_rate_schedule
from keras_attn_zoo.training.trainer import train, training_model

__all__ = [
    "CoupledSGD",
    "Distribution",
    "FineTuneResult",
    "OneCycle",
    "RECIPES",
    "Recipe",
    "STRATEGIES",
    "configure_cpu_devices",
    "evaluate",
    "evaluate_split",
    "fine_tune",
    "get_distribution",
    "get_recipe",
    "learning_rate_schedule",
    "results_markdown",
    "train",
    "training_model",
    "write_results",
]

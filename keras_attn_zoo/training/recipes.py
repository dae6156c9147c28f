"""The papers' training recipes as named, overridable configurations, and their schedules.

| recipe | source | epochs | batch | lr schedule | weight decay | augmentation |
| --- | --- | --- | --- | --- | --- | --- |
| ``fanet_cifar`` | FANet Sec. IV.A | 240 | 128 | 0.1, /10 every 60 epochs | 5e-4 | cifar |
| ``abn_cifar`` | ABN Sec. 4.1 and the authors' ResNet-110 command | 300 | 128 | 0.1, /10 at 150 and 225 | 1e-4 | cifar |
| ``paya_cifar`` | the PAYA authors' ``train_cifar_attention.py`` defaults (= their CIFAR logs) | 200 | 128 | 0.1, x0.2 at 60, 120 and 160, Nesterov | 5e-4 | cifar_reflect |
| ``imagenet`` | ABN / DAT ImageNet | 90 | 256 | 0.1, /10 at 30 and 60 | 1e-4 | imagenet |
| ``cosine`` | short budget | 30 | 128 | 0.1, cosine to 0 | 5e-4 | cifar |
| ``onecycle`` | short budget (Smith & Topin 2019) | 30 | 128 | one cycle, peak 0.1 | 5e-4 | cifar |

All use SGD with momentum 0.9 and *coupled* L2 weight decay, PyTorch's ``torch.optim.SGD`` rule
that the papers' code used (:class:`~keras_attn_zoo.training.optimizers.CoupledSGD`).
ABN's text says batch 256; the authors' published command (and this recipe) uses 128.
"""

import dataclasses
import math

import keras

from keras_attn_zoo.data.augment import AUGMENTATIONS

SCHEDULES = ("step", "cosine", "onecycle", "constant")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training configuration. Override fields with :func:`get_recipe`.

    Attributes:
        name: the recipe's name.
        source: where its numbers come from.
        epochs: training epochs.
        batch_size: global batch size (split across replicas).
        learning_rate: initial (step, cosine, constant) or peak (onecycle) learning rate.
        schedule: "step", "cosine", "onecycle" or "constant".
        milestones: epochs at which "step" multiplies the rate by ``gamma``.
        gamma: the step factor. Defaults to 0.1.
        momentum: SGD momentum. Defaults to 0.9.
        nesterov: Nesterov momentum. Defaults to False.
        weight_decay: coupled L2 coefficient (PyTorch's ``weight_decay``).
        augmentation: "cifar", "imagenet", "flip" or "none".
    """

    name: str
    source: str
    epochs: int
    batch_size: int
    learning_rate: float
    schedule: str
    weight_decay: float
    augmentation: str
    milestones: tuple = ()
    gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be a positive integer"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be a positive integer"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.augmentation in AUGMENTATIONS, f"augmentation must be one of {AUGMENTATIONS}"),
            (list(self.milestones) == sorted(set(self.milestones)) and all(m > 0 for m in self.milestones),
             "milestones must be increasing positive epochs"),
            (0 < self.gamma <= 1, "gamma must be in (0, 1]"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Recipe {self.name!r}: {message}; got {dataclasses.asdict(self)}.")

    def to_dict(self):
        """The recipe as plain JSON-ready data (what training records and manifest rows hold)."""
        return {**dataclasses.asdict(self), "milestones": list(self.milestones)}

    def summary(self):
        """One line for logs, e.g. "fanet_cifar: epochs 240, batch 128, SGD m 0.9, lr 0.1 ..."."""
        if self.schedule == "step":
            schedule = f"lr {self.learning_rate:g} x{self.gamma:g} at epochs {', '.join(map(str, self.milestones)) or '-'}"
        else:
            schedule = f"{self.schedule} lr {self.learning_rate:g}"
        return (
            f"{self.name}: epochs {self.epochs}, batch {self.batch_size}, SGD m {self.momentum:g}, "
            f"{schedule}, wd {self.weight_decay:g}, {self.augmentation} augmentation"
        )


RECIPES = {
    r.name: r
    for r in (
        Recipe("fanet_cifar", "FANet Sec. IV.A", 240, 128, 0.1, "step", 5e-4, "cifar", (60, 120, 180)),
        Recipe("abn_cifar", "ABN Sec. 4.1; authors' ResNet-110 command (batch 128, wd 1e-4)",
               300, 128, 0.1, "step", 1e-4, "cifar", (150, 225)),
        Recipe("paya_cifar", "PAYA authors' train_cifar_attention.py defaults (their CIFAR logs ran "
               "without Nesterov, the released code has it)", 200, 128, 0.1, "step", 5e-4, "cifar_reflect",
               (60, 120, 160), gamma=0.2, nesterov=True),
        Recipe("imagenet", "ABN / DAT ImageNet setting", 90, 256, 0.1, "step", 1e-4, "imagenet", (30, 60)),
        Recipe("cosine", "short budget: cosine decay to 0", 30, 128, 0.1, "cosine", 5e-4, "cifar"),
        Recipe("onecycle", "short budget: one-cycle (Smith & Topin 2019)", 30, 128, 0.1, "onecycle", 5e-4, "cifar"),
    )
}


def get_recipe(name, **overrides):
    """A named recipe with some fields replaced.

    Args:
        name: a key of ``RECIPES``.
        **overrides: recipe fields (``epochs=1``, ``batch_size=64``...); None values are ignored.

    Returns:
        A :class:`Recipe`.

    Example:
    >>> get_recipe("fanet_cifar", epochs=1).milestones
    (60, 120, 180)
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; recipes: {', '.join(RECIPES)}.")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(Recipe)} - {"name", "source"}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"Unknown recipe field(s) {sorted(unknown)}; fields: {sorted(fields)}.")
    return dataclasses.replace(RECIPES[name], **overrides)


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate (``torch.optim.lr_scheduler.OneCycleLR``'s cosine form).

    Rises from ``peak / div_factor`` to ``peak`` over the first ``pct_start`` of the steps, then
    falls to ``peak / (div_factor * final_div_factor)`` along a cosine.

    Args:
        peak: the maximum rate.
        total_steps: steps of the whole run.
        pct_start: fraction of the steps spent rising. Defaults to 0.3.
        div_factor: peak / initial rate. Defaults to 25.
        final_div_factor: initial / final rate. Defaults to 1e4.
    """

    def __init__(self, peak, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.pct_start, self.div_factor, self.final_div_factor = pct_start, div_factor, final_div_factor

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        start, end = self.peak / self.div_factor, self.peak / (self.div_factor * self.final_div_factor)
        up = max(1.0, self.pct_start * self.total_steps - 1)
        down = max(1.0, self.total_steps - 1 - up)

        def cosine(a, b, fraction):
            fraction = ops.clip(fraction, 0.0, 1.0)
            return b + (a - b) * 0.5 * (1 + ops.cos(math.pi * fraction))

        return ops.where(step <= up, cosine(start, self.peak, step / up), cosine(self.peak, end, (step - up) / down))

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def learning_rate_schedule(recipe, steps_per_epoch):
    """The recipe's learning rate as a function of the optimizer step.

    The step schedule changes the rate at the first step of each milestone epoch, as PyTorch's
    ``MultiStepLR`` stepped once per epoch does.

    Args:
        recipe: a :class:`Recipe`.
        steps_per_epoch: optimizer steps per epoch.

    Returns:
        A float or a ``keras.optimizers.schedules.LearningRateSchedule``.
    """
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant":
        return recipe.learning_rate
    if recipe.schedule == "step":
        milestones = [m for m in recipe.milestones if m < recipe.epochs]
        if not milestones:
            return recipe.learning_rate
        # Keras' PiecewiseConstantDecay keeps values[i] while step <= boundaries[i]; the
        # optimizer's step counter is 0 at the first step, so epoch m starts at step m * spe.
        boundaries = [m * steps_per_epoch - 1 for m in milestones]
        values = [recipe.learning_rate * recipe.gamma**i for i in range(len(milestones) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if recipe.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=total, alpha=0.0)
    return OneCycle(recipe.learning_rate, total)

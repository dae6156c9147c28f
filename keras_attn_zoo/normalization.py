"""The per-channel statistics that inputs are normalised with, ``(x / 255 - mean) / std``.

A leaf of the package: the weight records (``weights.WeightRecord``), the data pipeline
(``data.preprocessing``) and saved model files (``modelfile``) all carry a :class:`ChannelStats`.
"""

import dataclasses

DECIMALS = 6


@dataclasses.dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of images scaled to [0, 1].

    Args:
        mean: one value per channel, e.g. (0.4914, 0.4822, 0.4465).
        std: one positive value per channel.
    """

    mean: tuple
    std: tuple

    def __post_init__(self):
        mean = tuple(round(float(m), DECIMALS) for m in self.mean)
        std = tuple(round(float(s), DECIMALS) for s in self.std)
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std need one value per channel, got {mean} and {std}.")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def to_dict(self):
        """The manifest / training-record form: ``{"scale": 255, "mean": [...], "std": [...]}``."""
        return {"scale": 255, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, config):
        """Inverse of :meth:`to_dict`; a scale other than 255 is an error."""
        if config.get("scale", 255) != 255:
            raise ValueError(f"Only inputs in [0, 255] (scale 255) are supported, got {config!r}.")
        return cls(tuple(config["mean"]), tuple(config["std"]))

"""Early exit from a PAYA model's local predictions (ours: the papers describe the idea, no
published code implements it; spec Section 6).

Each attention module's logits are a complete class prediction from its own depth. The model is
cut into per-stage sub-models that share its layers (and weights): segment i runs from the
previous module's feature map to module i's feature map and logits; the last segment runs the
rest (the final features, global gate, aggregation). After each segment, the images whose module
is confident enough (``max softmax(module logits) >= threshold``) leave the batch with that
module's softmax as their scores; only the others go on, so the deeper layers never run for the
images that left: a real saving of compute, not a mask over a full forward pass.

>>> import numpy as np, keras_attn_zoo as zoo
>>> exits = EarlyExit(zoo.load("paya_resnet20"))
>>> result = exits.predict(np.zeros((4, 32, 32, 3), "float32"), threshold=0.9)
>>> result.scores.shape, result.exit_names
((4, 10), ['stage1_paya', 'stage2_paya', 'stage3_paya', 'full'])
"""

import dataclasses
import math

import keras
import numpy as np

from keras_attn_zoo.layers.attend_rectify import PayaGate, PayaModule
from keras_attn_zoo.models.paya import paya_layers

FULL = "full"


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def layer_macs(layer):
    """Analytic multiply-adds of one call of ``layer`` on one image (convolutions and dense
    layers, the PAYA modules' convolutions and gate included; BN, activations, pooling and the
    softmax-weighted sums are left out as negligible)."""
    if isinstance(layer, PayaModule):
        _, h, w, c = layer.input.shape
        return h * w * 9 * c * layer.heads * (layer.classes + 2)
    if isinstance(layer, PayaGate):
        return layer.dense.kernel.shape[0] * layer.outputs
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        return math.prod(layer.output.shape[1:3]) * kh * kw * cin * cout
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.kernel.shape)
    return 0


def macs(model):
    """Analytic multiply-adds of ``model`` (a functional model or segment) per image."""
    return sum(layer_macs(layer) for layer in model.layers)


@dataclasses.dataclass
class EarlyExitResult:
    """What :meth:`EarlyExit.predict` gives for a batch.

    Attributes:
        scores: class scores ``(batch, classes)``: the exiting module's softmax, or the full
            model's scores for images that went through.
        exit_index: where each image left, ``(batch,)``: i for module ``exit_names[i]``,
            ``len(exit_names) - 1`` for the full model.
        exit_names: the modules in the order they are reached (shallowest first), then "full".
        macs: the analytic multiply-adds each image cost ``(batch,)``.
    """

    scores: np.ndarray
    exit_index: np.ndarray
    exit_names: list
    macs: np.ndarray

    def exit_shares(self):
        """The share of images leaving at each exit, ``{name: share}``."""
        counts = np.bincount(self.exit_index, minlength=len(self.exit_names))
        return {name: float(c) / len(self.exit_index) for name, c in zip(self.exit_names, counts)}


class EarlyExit:
    """A PAYA model cut into per-stage segments that share its layers.

    Args:
        model: a PAYA model (``PAYAModel``, e.g. ``keras_attn_zoo.load("paya_resnet20")``).

    Attributes:
        exit_names: the modules, shallowest first, then "full".
        segments: the sub-models: segment i maps the previous feature map (the image for i = 0)
            to ``[module i's feature map, module i's logits]``; the last maps the last module's
            feature map and every module's logits to the model's scores.
        segment_macs: analytic multiply-adds per image of each segment.
    """

    def __init__(self, model):
        modules = paya_layers(model)[::-1]  # shallowest first
        if not modules:
            raise ValueError(f"{model.name} has no PAYA attention modules, so it has no early exits.")
        self.model = model
        self.exit_names = [m.name for m in modules] + [FULL]
        self.segments = []
        previous = model.input
        for module in modules:
            self.segments.append(keras.Model(previous, [module.input, module.output[0]], name=f"to_{module.name}"))
            previous = module.input
        logits = [m.output[0] for m in modules]
        final = model.output["predictions"] if isinstance(model.output, dict) else model.output
        self.segments.append(keras.Model([previous, *logits], final, name="to_full"))
        self.segment_macs = [macs(s) for s in self.segments]

    @property
    def cumulative_macs(self):
        """Multiply-adds per image of leaving at each exit (the last: the full model)."""
        return list(np.cumsum(self.segment_macs))

    def predict(self, images, threshold, batch_size=64):
        """Class scores for ``images``, each leaving at the first module confident enough.

        Args:
            images: model inputs ``(batch, H, W, C)``.
            threshold: leave at module i when ``max softmax(logits_i) >= threshold``: 0 makes
                every image leave at the first module, more than 1 makes none leave (the
                result is then the full model's).
            batch_size: images per forward pass. Defaults to 64.

        Returns:
            An :class:`EarlyExitResult`.
        """
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
            raise ValueError(f"threshold must be a number >= 0, got {threshold!r}.")
        images = np.asarray(images, dtype="float32")
        if len(images) == 0:
            raise ValueError("No images given: the batch is empty.")
        parts = [self._predict_batch(images[i:i + batch_size], threshold)
                 for i in range(0, len(images), batch_size)]
        scores, exits = (np.concatenate(p) for p in zip(*parts))
        cost = np.asarray(self.cumulative_macs)[exits]
        return EarlyExitResult(scores, exits, list(self.exit_names), cost)

    def _predict_batch(self, images, threshold):
        n = len(images)
        scores = np.zeros((n, self.model.output_shape[-1]), "float32")
        exits = np.full(n, len(self.segments) - 1)
        remaining = np.arange(n)
        features, logits = images, []
        for i, segment in enumerate(self.segments[:-1]):
            features, module_logits = segment.predict_on_batch(features)  # compiled once per shape
            probs = _softmax(module_logits.astype("float64"))
            leave = probs.max(-1) >= threshold
            scores[remaining[leave]] = probs[leave]
            exits[remaining[leave]] = i
            keep = ~leave
            remaining, features = remaining[keep], features[keep]
            logits = [l[keep] for l in logits] + [module_logits[keep]]
            if not len(remaining):
                return scores, exits
        scores[remaining] = self.segments[-1].predict_on_batch([features, *logits])
        return scores, exits


def _batch1_latency_ms(fn, images):
    """Median wall time of ``fn`` on each image alone (batch 1), after one warm-up call (the
    full model and the segments run as compiled ``predict_on_batch`` functions alike)."""
    import time

    fn(images[:1])
    times = []
    for i in range(len(images)):
        start = time.perf_counter()
        fn(images[i:i + 1])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def sweep(model, images, labels, thresholds, latency_images=20, batch_size=64):
    """Early exit over a sweep of thresholds against the full model, on labelled images.

    Args:
        model: a PAYA model.
        images: model inputs ``(N, H, W, C)`` (normalised as its weights expect).
        labels: int labels ``(N,)``.
        thresholds: the thresholds to try.
        latency_images: images timed one at a time (batch 1, CPU as this process runs) per row;
            0 skips the timing. Defaults to 20.
        batch_size: images per pass for the accuracy. Defaults to 64.

    Returns:
        ``{"full": {...}, "modules": {name: own top-1}, "rows": [{...} per threshold]}``; the
        full model's entry and every row have ``top1``, ``mean_macs``, ``macs_ratio`` (of
        the full model's), ``latency_ms`` (median at batch 1, None when not timed) and (rows)
        ``threshold`` and ``exit_shares``.
    """
    from keras_attn_zoo.explain.outputs import run
    from keras_attn_zoo.models.paya import paya_outputs_model

    exits = EarlyExit(model)
    images, labels = np.asarray(images, "float32"), np.asarray(labels)
    timed = images[:latency_images]
    full_macs = exits.cumulative_macs[-1]
    outputs = run(paya_outputs_model(model), images, batch_size)
    full = {
        "top1": float(np.mean(outputs["scores"].argmax(-1) == labels)),
        "mean_macs": float(full_macs),
        "macs_ratio": 1.0,
        "latency_ms": _batch1_latency_ms(model.predict_on_batch, timed) if len(timed) else None,
    }
    modules = {name: float(np.mean(outputs[f"{name}/logits"].argmax(-1) == labels)) for name in exits.exit_names[:-1]}
    modules["predictions"] = float(np.mean(outputs["net_logits"].argmax(-1) == labels))
    rows = []
    for threshold in thresholds:
        result = exits.predict(images, threshold, batch_size)
        rows.append({
            "threshold": float(threshold),
            "top1": float(np.mean(result.scores.argmax(-1) == labels)),
            "exit_shares": result.exit_shares(),
            "mean_macs": float(result.macs.mean()),
            "macs_ratio": float(result.macs.mean() / full_macs),
            "latency_ms": _batch1_latency_ms(lambda x: exits.predict(x, threshold, 1), timed) if len(timed) else None,
        })
    return {"full": full, "modules": modules, "rows": rows, "exit_names": exits.exit_names,
            "exit_macs": [float(m) for m in exits.cumulative_macs]}


def sweep_markdown(report, title, written=None):
    """The sweep of :func:`sweep` as a markdown table, under ``title`` and the ``written`` line
    (how it was measured) if given."""
    names = report["exit_names"]

    def ms(value):
        return "-" if value is None else f"{value:.2f}"

    lines = [f"# {title}", ""] + ([written, ""] if written else [])
    lines.append("Each module's own top-1 (argmax of its logits): " + ", ".join(
        f"{name} {100 * acc:.2f}%" for name, acc in report["modules"].items()) + ".")
    lines.append("")
    lines.append("Multiply-adds of leaving at each exit: " + ", ".join(
        f"{name} {m / 1e6:.1f}M ({100 * m / report['exit_macs'][-1]:.1f}%)" for name, m in zip(names, report["exit_macs"])) + ".")
    lines += ["", "| threshold | top-1 | " + " | ".join(f"left at {n}" for n in names)
              + " | mean MACs | of full | CPU latency, batch 1 (ms) |",
              "| --- | ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: | ---: |"]
    full = report["full"]
    lines.append(f"| full model | {100 * full['top1']:.2f}% | " + " | ".join("-" for _ in names)
                 + f" | {full['mean_macs'] / 1e6:.1f}M | 100.0% | {ms(full['latency_ms'])} |")
    for row in report["rows"]:
        lines.append(
            f"| {row['threshold']:g} | {100 * row['top1']:.2f}% | "
            + " | ".join(f"{100 * row['exit_shares'][n]:.1f}%" for n in names)
            + f" | {row['mean_macs'] / 1e6:.1f}M | {100 * row['macs_ratio']:.1f}% | {ms(row['latency_ms'])} |"
        )
    return "\n".join(lines) + "\n"

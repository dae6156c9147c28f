"""PyTorch references of the zoo's architectures: independent implementations that compute the
same function as our Keras models when given the same weights.

- **ABN** (:class:`ABNResNet`, :class:`ABNWideResNet`, :class:`ABNResNeXt`): the structure of the
  ABN authors' PyTorch code (attribute names, layer order, forward pass), so that their
  checkpoints' keys (``layer3.0.conv1.weight``, ``att_conv``, ``bn_att3``...) are these modules'
  own. ``tests/test_convert.py`` converts such checkpoints into the zoo's models and checks the
  scores, attention-branch logits and maps against these modules.
- **Plain and SE CIFAR ResNets** (:class:`CifarResNet`): He et al.'s CIFAR ResNet (Section 4.2),
  with FANet's 3x3 projection shortcuts or the ABN code's 1x1 ones, and SE (Hu et al.) on each
  residual branch, written for the benchmark in the same key names (``tests/test_benchmark.py``
  checks their logits against ours).

There is none for FA, FA-SE (FANet published no code) or PAYA (its authors' code is a Wide
ResNet of another layout); ``keras_attn_zoo.convert.to_torch`` says which reference a registry
model has (or why none) and gives it the model's weights.

Each module's ``forward`` takes NCHW float32 images and returns the logits, as a tuple
``(attention-branch logits, logits, attention map)`` for the ABN ones.
"""

try:
    import torch
except ImportError as e:  # pragma: no cover - torch is in the convert and test extras
    raise ImportError("The PyTorch references need torch: pip install 'keras_attn_zoo[convert]'.") from e

import numpy as np

from keras_attn_zoo.timing import random_inputs, time_calls

nn = torch.nn

class SqueezeExcite(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`` (Hu et al.)."""

    def __init__(self, channels, ratio):
        super().__init__()
        hidden = max(1, channels // ratio)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, eps=1e-5, se_ratio=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=eps)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=eps)
        self.relu = nn.ReLU()
        self.downsample = downsample
        if se_ratio:
            self.se = SqueezeExcite(planes, se_ratio)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if hasattr(self, "se"):
            out = self.se(out)
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, eps=1e-5, se_ratio=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=eps)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=eps)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, eps=eps)
        self.relu = nn.ReLU()
        self.downsample = downsample
        if se_ratio:
            self.se = SqueezeExcite(planes * 4, se_ratio)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if hasattr(self, "se"):
            out = self.se(out)
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _make_layer(block, inplanes, planes, n, stride, shortcut_kernel=1, eps=1e-5, se_ratio=None):
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, shortcut_kernel, stride, shortcut_kernel // 2, bias=False),
            nn.BatchNorm2d(planes * block.expansion, eps=eps),
        )
    layers = [block(inplanes, planes, stride, downsample, eps, se_ratio)]
    layers += [block(planes * block.expansion, planes, eps=eps, se_ratio=se_ratio) for _ in range(1, n)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet: a 3x3 stem, 3 stages of ``blocks`` blocks (16/32/64 base
    channels at strides 1/2/2), global average pooling and ``fc``; optionally SE of reduction
    ratio ``se_ratio`` (``max(1, C // r)`` hidden units) in every residual branch.

    Args:
        blocks: n, blocks per stage (depth 6n + 2).
        classes: outputs of ``fc``.
        block: "basic" or "bottleneck". Defaults to "basic".
        shortcut_kernel: 3 (FANet's projection shortcuts) or 1 (the ABN code's). Defaults to 3.
        eps: BatchNorm epsilon. Defaults to 1e-3 (Keras', the zoo's CIFAR default).
        se_ratio: SE reduction ratio r, or None for no SE. Defaults to None.
    """

    def __init__(self, blocks, classes, block="basic", shortcut_kernel=3, eps=1e-3, se_ratio=None):
        super().__init__()
        block = BLOCKS[block]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16, eps=eps)
        inplanes = 16
        for i, width in enumerate((16, 32, 64), start=1):
            setattr(self, f"layer{i}", _make_layer(block, inplanes, width, blocks, 1 if i == 1 else 2,
                                                   shortcut_kernel, eps, se_ratio))
            inplanes = width * block.expansion
        self.fc = nn.Linear(inplanes, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


class ABNHeads(nn.Module):
    """The attention-branch heads and forward of the ABN authors' code (shared by all nets)."""

    def make_heads(self, channels, classes):
        self.bn_att = nn.BatchNorm2d(channels)
        self.att_conv = nn.Conv2d(channels, classes, 1, bias=False)
        self.bn_att2 = nn.BatchNorm2d(classes)
        self.att_conv2 = nn.Conv2d(classes, classes, 1, bias=False)
        self.att_conv3 = nn.Conv2d(classes, 1, 3, padding=1, bias=False)
        self.bn_att3 = nn.BatchNorm2d(1)

    def branch(self, x, att_stage):
        ax = self.bn_att(att_stage(x))
        ax = torch.relu(self.bn_att2(self.att_conv(ax)))
        att = torch.sigmoid(self.bn_att3(self.att_conv3(ax)))
        logits = self.att_conv2(ax).mean(dim=(2, 3))
        return logits, att, x * att + x


class ABNResNet(ABNHeads):
    """The ABN authors' ResNet: CIFAR (3 stages, 16/32/64) or ImageNet (7x7 stem, max pool, 4
    stages, 64-512), the attention branch a stride-1 copy of the last stage (``att_layer3`` /
    ``att_layer4``)."""

    def __init__(self, block, counts, classes, imagenet):
        super().__init__()
        widths = (64, 128, 256, 512) if imagenet else (16, 32, 64)
        self.imagenet = imagenet
        self.inplanes = widths[0]
        if imagenet:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.stages = []
        for i, (w, n) in enumerate(zip(widths, counts), start=1):
            if i == len(widths):  # the attention branch's stride-1 copy of the last stage
                setattr(self, f"att_layer{i}", self._make_layer(block, w, n, 1, advance=False))
                self.att_name = f"att_layer{i}"
            layer = self._make_layer(block, w, n, 1 if i == 1 else 2)
            setattr(self, f"layer{i}", layer)
            self.stages.append(layer)
        self.make_heads(widths[-1] * block.expansion, classes)
        self.fc = nn.Linear(widths[-1] * block.expansion, classes)

    def _make_layer(self, block, planes, n, stride, advance=True):
        layer = _make_layer(block, self.inplanes, planes, n, stride)
        if advance:
            self.inplanes = planes * block.expansion
        return layer

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.imagenet:
            x = self.maxpool(x)
        for stage in self.stages[:-1]:
            x = stage(x)
        logits, att, x = self.branch(x, getattr(self, self.att_name))
        x = self.stages[-1](x).mean(dim=(2, 3))
        return logits, self.fc(x), att


class WideBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout and stride == 1
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        pre = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))
        return (x if self.equal else self.convShortcut(pre)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class ABNWideResNet(ABNHeads):
    """The ABN authors' Wide ResNet (pre-activation, ``att_block3`` the branch's stage copy)."""

    def __init__(self, depth, k, classes):
        super().__init__()
        n, ch = (depth - 4) // 6, (16, 16 * k, 32 * k, 64 * k)
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.att_block3 = NetworkBlock(n, ch[2], ch[3], 1)
        self.make_heads(ch[3], classes)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], classes)

    def forward(self, x):
        x = self.block2(self.block1(self.conv1(x)))
        logits, att, x = self.branch(x, self.att_block3)
        x = torch.relu(self.bn1(self.block3(x))).mean(dim=(2, 3))
        return logits, self.fc(x), att


class ResNeXtBottleneck(nn.Module):
    def __init__(self, cin, cout, stride, cardinality, width):
        super().__init__()
        self.conv_reduce = nn.Conv2d(cin, width, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(width)
        self.conv_conv = nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.conv_expand = nn.Conv2d(width, cout, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if cin != cout:
            self.shortcut.add_module("shortcut_conv", nn.Conv2d(cin, cout, 1, stride, bias=False))
            self.shortcut.add_module("shortcut_bn", nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn_reduce(self.conv_reduce(x)))
        y = torch.relu(self.bn(self.conv_conv(y)))
        return torch.relu(self.shortcut(x) + self.bn_expand(self.conv_expand(y)))


class ABNResNeXt(ABNHeads):
    """The ABN authors' CIFAR ResNeXt; note ``bn_att`` is created but never called."""

    def __init__(self, cardinality, base_width, classes, blocks=3):
        super().__init__()
        outs = (256, 512, 1024)
        self.conv_1_3x3 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(64)

        def stage(name, cin, s, stride):
            seq = nn.Sequential()
            for b in range(blocks):
                seq.add_module(f"{name}_bottleneck_{b}", ResNeXtBottleneck(
                    cin if b == 0 else outs[s], outs[s], stride if b == 0 else 1, cardinality,
                    cardinality * base_width * 2 ** s))
            return seq

        self.stage_1 = stage("stage_1", 64, 0, 1)
        self.stage_2 = stage("stage_2", 256, 1, 2)
        self.stage_3 = stage("stage_3", 512, 2, 2)
        self.stage_att = stage("stage_att", 512, 2, 1)
        self.make_heads(1024, classes)
        self.classifier = nn.Linear(1024, classes)

    def forward(self, x):
        x = self.stage_2(self.stage_1(torch.relu(self.bn_1(self.conv_1_3x3(x)))))
        ax = torch.relu(self.bn_att2(self.att_conv(self.stage_att(x))))  # no bn_att
        att = torch.sigmoid(self.bn_att3(self.att_conv3(ax)))
        logits = self.att_conv2(ax).mean(dim=(2, 3))
        x = self.stage_3(x * att + x).mean(dim=(2, 3))
        return logits, self.classifier(x), att


def build(config):
    """The reference module a config of ``keras_attn_zoo.convert.to_torch.reference_config``
    describes: ``{"module": "CifarResNet" | "ABNResNet", ...its arguments}``."""
    kind = config["module"]
    if kind == "CifarResNet":
        return CifarResNet(config["blocks"], config["classes"], config["block"], config["shortcut_kernel"],
                           config["eps"], config["se_ratio"])
    if kind == "ABNResNet":
        return ABNResNet(BLOCKS[config["block"]], tuple(config["counts"]), config["classes"], config["imagenet"])
    raise ValueError(f"Unknown reference module {kind!r}; expected CifarResNet or ABNResNet.")


def load_numpy_state(module, state):
    """Load ``{key: numpy array}`` into ``module``, every key used and every tensor filled."""
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return module


def _logits(output):
    return output[1] if isinstance(output, tuple) else output


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, "float32").transpose(0, 3, 1, 2)))


def logits(module, x):
    """The class logits of ``module`` for NHWC float32 images ``x``, as NumPy (no gradients)."""
    with torch.no_grad():
        return _logits(module(_nchw(x))).numpy()


def time_inference(module, batches, image_shape, repeats=10, warmup=2, max_seconds=None):
    """``{batch: [seconds per call]}`` of ``module``'s forward pass in eval mode under
    ``torch.inference_mode`` (PyTorch's default threads), on seeded NCHW inputs."""
    module.eval()
    times = {}
    for batch in batches:
        x = _nchw(random_inputs(batch, image_shape))
        with torch.inference_mode():
            times[batch] = time_calls(lambda: module(x), repeats, warmup, max_seconds)
    return times


def time_training(module, batch, image_shape, classes, steps=5, warmup=1, max_seconds=None):
    """Seconds per training step of ``module``: SGD with Nesterov momentum 0.9 and coupled
    weight decay 5e-4 (the zoo's ``CoupledSGD``, PyTorch's rule), cross-entropy on the logits,
    plus that of the attention branch's logits for the ABN modules (L_att + L_per), BatchNorm in
    training mode; seeded inputs and labels."""
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = _nchw(random_inputs(batch, image_shape))
    y = torch.from_numpy((random_inputs(batch, (1,), seed=1)[:, 0].argsort() % classes).astype("int64"))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = module(x)
        loss = loss_fn(_logits(out), y)
        if isinstance(out, tuple):
            loss = loss + loss_fn(out[0], y)
        loss.backward()
        optimizer.step()

    return time_calls(step, steps, warmup, max_seconds)

"""torchvision's ResNet-18 and ResNet-50, replayed: ``torchvision.models.resnet18(**config)`` and
``torchvision.models.resnet50(**config)`` with ``num_classes`` and ``zero_init_residual``.

Version range: torchvision >= 0.2.2, < 0.30. torchvision 0.2.2 (2019) is where ``ResNet.__init__``
took its present init pass: ``nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")``
replaced the hand-written ``weight.data.normal_(0, math.sqrt(2. / n))`` (the same law, other
float bits), the norms got ``constant_``, and ``zero_init_residual`` appeared. Later releases added
``groups``, ``width_per_group``, ``replace_stride_with_dilation`` and ``norm_layer`` (0.3) and the
``weights=`` API (0.13), none of which changes the modules built, their order or the draws at the
defaults; key names (``layerN.i.downsample.0`` ...) are those of 0.1. 0.28.0 (the reference
digests) and 0.29.x have the same ``resnet.py`` byte for byte. The bytes are also torch's:
``Conv2d``'s and ``Linear``'s ``reset_parameters`` and the CPU ``normal_`` kernel, hence the
service's rule of the same torch version and CPU capability class (``docs/api.md``).

The replay, in order (all draws from torch's global generators, as the reference's):

1. Construction, in the reference's construction order: ``conv1`` (3 -> 64, 7x7), then for each
   stage s = 1..4 with ``planes = 64 * 2**(s-1)``, stride 1 for s = 1 and 2 otherwise: the
   first block's ``downsample`` 1x1 conv (built in ``_make_layer`` *before* the block, only when
   the stride is not 1 or the channels change), then each block's convs in order (BasicBlock:
   ``conv1``, ``conv2`` 3x3; Bottleneck: ``conv1`` 1x1, ``conv2`` 3x3, ``conv3`` 1x1 to
   ``4 * planes``), then ``fc``. Every ``Conv2d`` (no bias) draws
   ``W ~ U(-b, b)``, ``b = 1 / sqrt(fan_in)`` (``kaiming_uniform_(a=sqrt(5))``); ``fc`` draws
   ``W ~ U(-1/sqrt(in), 1/sqrt(in))`` then ``bias ~ U(-1/sqrt(in), 1/sqrt(in))``. BatchNorm2d
   draws nothing: weight 1, bias 0, ``running_mean`` 0, ``running_var`` 1, ``num_batches_tracked`` 0.
2. Init pass over ``self.modules()`` (parent first, registration order, so a block's
   ``downsample`` comes after its own convs here): each ``Conv2d`` redrawn
   ``W ~ N(0, 2 / fan_out)``, ``fan_out = out_channels * kh * kw``
   (``kaiming_normal_(mode="fan_out", nonlinearity="relu")``); each BatchNorm weight 1, bias 0.
   ``fc`` keeps its construction draws.
3. With ``zero_init_residual``: the last BatchNorm weight of each block (``bn2`` of a BasicBlock,
   ``bn3`` of a Bottleneck) set to 0. No draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from service.presets.base import Field, InitRule, Preset, size

STAGE_PLANES = (64, 128, 256, 512)
STEM_CHANNELS = 64


class _BasicBlock(nn.Module):
    """``torchvision.models.resnet.BasicBlock``'s modules, registered in its order."""

    expansion = 1
    last_bn = "bn2"

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample


class _Bottleneck(nn.Module):
    """``torchvision.models.resnet.Bottleneck``'s modules (stride on the 3x3, "v1.5"), in its order."""

    expansion = 4
    last_bn = "bn3"

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample


class _ResNet(nn.Module):
    """``torchvision.models.resnet.ResNet``'s parameter-holding modules, built and initialized in its order.

    The stateless ones (ReLU, pooling) are left out: they hold no keys and draw nothing. This is a
    replay of the initial state, not a network to run.
    """

    def __init__(self, block: type[_BasicBlock | _Bottleneck], layers: tuple[int, ...], num_classes: int,
                 zero_init_residual: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        inplanes = STEM_CHANNELS
        for i, (planes, blocks) in enumerate(zip(STAGE_PLANES, layers, strict=True)):
            stride = 1 if i == 0 else 2
            out = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != out:  # built before the block, as _make_layer does
                downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            stage = [block(inplanes, planes, stride, downsample)]
            stage += [block(out, planes, 1, None) for _ in range(1, blocks)]
            inplanes = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.fc = nn.Linear(STAGE_PLANES[-1] * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, block):
                    nn.init.constant_(getattr(m, block.last_bn).weight, 0)


FIELDS = (
    size("num_classes", 1000, "outputs of the final fc layer"),
    Field("zero_init_residual", "bool", False,
          "zero each residual block's last BatchNorm weight (bn2 in resnet18, bn3 in resnet50)"),
)


def _builder(block: type[_BasicBlock | _Bottleneck], layers: tuple[int, ...]):
    def build(config: Mapping[str, Any]) -> nn.Module:
        return _ResNet(block, layers, config["num_classes"], config["zero_init_residual"])

    return build


def _check(config: Mapping[str, Any]) -> list[str]:
    """Nothing beyond the fields' own checks: torchvision neither raises nor warns on these two."""
    return []


def _rules(block: type[_BasicBlock | _Bottleneck]) -> tuple[InitRule, ...]:
    last, others = block.last_bn, "|".join(f"bn{i}" for i in range(1, 4) if f"bn{i}" != block.last_bn)
    bn = r"(bn1|layer\d\.\d+\.(bn\d|downsample\.1))"
    return (
        InitRule(r"(conv1|layer\d\.\d+\.(conv\d|downsample\.0))\.weight", "kaiming_normal(fan_out, relu)"),
        InitRule(rf"layer\d\.\d+\.{last}\.weight", "ones; zeros with zero_init_residual"),
        InitRule(rf"(bn1|layer\d\.\d+\.({others}|downsample\.1))\.weight", "ones"),
        InitRule(rf"{bn}\.(bias|running_mean)", "zeros"),
        InitRule(rf"{bn}\.running_var", "ones"),
        InitRule(rf"{bn}\.num_batches_tracked", "zero (int64)"),
        InitRule(r"fc\.weight", "kaiming_uniform(a=sqrt(5)): uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear default)"),
        InitRule(r"fc\.bias", "uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear default)"),
    )


def _preset(depth: int, block: type[_BasicBlock | _Bottleneck], layers: tuple[int, ...]) -> Preset:
    return Preset(
        name=f"torchvision/resnet{depth}",
        library="torchvision",
        reference=f"torchvision.models.resnet{depth}(**config)",
        versions=">=0.2.2,<0.30",
        fields=FIELDS,
        build=_builder(block, layers),
        check=_check,
        rules=_rules(block),
        doc=(f"torchvision's ResNet-{depth} ({block.__name__.lstrip('_')} blocks, stages {list(layers)}), "
             "from scratch: convs kaiming_normal(fan_out, relu), BatchNorm ones and zeros, fc nn.Linear's default."),
    )


RESNET18 = _preset(18, _BasicBlock, (2, 2, 2, 2))
RESNET50 = _preset(50, _Bottleneck, (3, 4, 6, 3))

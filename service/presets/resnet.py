"""torchvision ResNets: placeholder until their replay lands."""

from __future__ import annotations

from service.presets.base import Preset


def _build(config):
    raise NotImplementedError("resnet")


RESNET18 = Preset(name="torchvision/resnet18", library="torchvision", reference="", versions="", fields=(), build=_build)
RESNET50 = Preset(name="torchvision/resnet50", library="torchvision", reference="", versions="", fields=(), build=_build)

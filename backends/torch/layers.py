"""The torch modules of an archspec network. Small on purpose: the builder (model.py) hands each
block its ready-made layers, read off the IR, and the blocks only say in which order they run.

Attribute names follow timm's EfficientNet (conv_stem, bn1, blocks.S.B.conv_pw / bn1 / conv_dw /
bn2 / se / conv_pwl / bn3, conv_head, bn2, classifier): they are the IR's node names.
"""

from __future__ import annotations

import torch
from torch import nn

from .norms import make_activation


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 act(W1 mean_hw(x) + b1) + b2), with 1x1 convs as in the reference."""

    def __init__(self, channels: int, reduced: int, activation: str) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = make_activation(activation, inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.conv_expand(self.act1(self.conv_reduce(s))))
        # where no gradient is recorded, x (the norm layer's fresh output) is scaled where it lies:
        # one mid-channel-sized allocation less per block at inference
        return x * scale if x.requires_grad else x.mul_(scale)


def _residual(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """out + x; where no gradient is recorded, added into `out` (the block's fresh output), never
    into x, which the caller may still hold."""
    return out + x if out.requires_grad else out.add_(x)


class DepthwiseSeparable(nn.Module):
    """MBConv with expansion 1: kxk grouped conv -> SE -> 1x1 project (+ skip)."""

    def __init__(
        self,
        conv_dw: nn.Module,
        bn1: nn.Module,
        se: nn.Module,
        conv_pw: nn.Module,
        bn2: nn.Module,
        drop_path: nn.Module,
        has_skip: bool,
    ) -> None:
        super().__init__()
        self.conv_dw, self.bn1, self.se = conv_dw, bn1, se
        self.conv_pw, self.bn2 = conv_pw, bn2
        self.drop_path = drop_path
        self.has_skip = has_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.se(self.bn1(self.conv_dw(x)))))
        return _residual(self.drop_path(out), x) if self.has_skip else out


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand -> kxk grouped conv -> SE -> 1x1 project (+ skip)."""

    def __init__(
        self,
        conv_pw: nn.Module,
        bn1: nn.Module,
        conv_dw: nn.Module,
        bn2: nn.Module,
        se: nn.Module,
        conv_pwl: nn.Module,
        bn3: nn.Module,
        drop_path: nn.Module,
        has_skip: bool,
    ) -> None:
        super().__init__()
        self.conv_pw, self.bn1 = conv_pw, bn1
        self.conv_dw, self.bn2, self.se = conv_dw, bn2, se
        self.conv_pwl, self.bn3 = conv_pwl, bn3
        self.drop_path = drop_path
        self.has_skip = has_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        out = self.bn3(self.conv_pwl(self.se(out)))
        return _residual(self.drop_path(out), x) if self.has_skip else out


class EdgeResidual(nn.Module):
    """Fused MBConv (EfficientNetV2; timm's EdgeResidual): kxk expansion conv -> SE -> 1x1 project
    (+ skip)."""

    def __init__(
        self,
        conv_exp: nn.Module,
        bn1: nn.Module,
        se: nn.Module,
        conv_pwl: nn.Module,
        bn2: nn.Module,
        drop_path: nn.Module,
        has_skip: bool,
    ) -> None:
        super().__init__()
        self.conv_exp, self.bn1, self.se = conv_exp, bn1, se
        self.conv_pwl, self.bn2 = conv_pwl, bn2
        self.drop_path = drop_path
        self.has_skip = has_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pwl(self.se(self.bn1(self.conv_exp(x)))))
        return _residual(self.drop_path(out), x) if self.has_skip else out


class ConvBnAct(nn.Module):
    """Fused MBConv with expansion 1 (timm's ConvBnAct): kxk conv -> norm + activation (+ skip)."""

    def __init__(self, conv: nn.Module, bn1: nn.Module, drop_path: nn.Module, has_skip: bool) -> None:
        super().__init__()
        self.conv, self.bn1 = conv, bn1
        self.drop_path = drop_path
        self.has_skip = has_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv(x))
        return _residual(self.drop_path(out), x) if self.has_skip else out


class GlobalPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class EfficientNet(nn.Module):
    """stem -> blocks (a Sequential of stages, each a Sequential of blocks) -> head -> classifier."""

    def __init__(
        self,
        conv_stem: nn.Module,
        bn1: nn.Module,
        blocks: nn.Sequential,
        conv_head: nn.Module,
        bn2: nn.Module,
        global_pool: nn.Module,
        head_drop: nn.Module,
        classifier: nn.Module,
    ) -> None:
        super().__init__()
        self.conv_stem, self.bn1 = conv_stem, bn1
        self.blocks = blocks
        self.conv_head, self.bn2 = conv_head, bn2
        self.global_pool, self.head_drop, self.classifier = global_pool, head_drop, classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn1(self.conv_stem(x)))
        return self.bn2(self.conv_head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head_drop(self.global_pool(self.forward_features(x))))


# The block classes the block kinds name (archspec.blocks), by name.
BLOCKS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (DepthwiseSeparable, InvertedResidual, EdgeResidual, ConvBnAct)
}

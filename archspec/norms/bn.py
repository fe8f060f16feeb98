"""Batch normalization (Ioffe & Szegedy, 2015): statistics over the batch and (H, W) per channel."""

from . import NormKind

KIND = NormKind(
    name="bn",
    summary="batch norm",
    fields=("eps", "momentum"),
    batch_dependent=True,
    proxy=False,
    module="BatchNormAct2d",
    arguments=lambda n: ((n.channels,), {"eps": n.eps, "momentum": n.momentum, "activation": n.activation}),
    kernel_class="bn",
    counted_as="batch_norm",
    timm=lambda n: ("BatchNormAct2d", {"eps": n.eps, "momentum": n.momentum}),
)

"""Layer normalization over (C, H, W) per sample with a per-channel affine (paper eq. 3): GN with
one group, so it runs torch's group_norm."""

from . import NormKind

KIND = NormKind(
    name="ln",
    summary="layer norm",
    fields=("eps",),
    batch_dependent=False,
    proxy=True,
    module="GroupNormAct",
    arguments=lambda n: ((n.channels, n.num_groups), {"eps": n.eps, "activation": n.activation}),
    kernel_class="ln",
    counted_as="group_norm",
    timm=lambda n: ("GroupNorm1Act", {"eps": n.eps}),
    groups=lambda spec_groups, channels: 1,
)

"""Group normalization (Wu & He, 2018): statistics per sample over groups of channels and (H, W)."""

from . import NormKind

KIND = NormKind(
    name="gn",
    summary="group norm",
    fields=("groups", "eps"),
    batch_dependent=False,
    proxy=True,
    module="GroupNormAct",
    arguments=lambda n: ((n.channels, n.num_groups), {"eps": n.eps, "activation": n.activation}),
    kernel_class="gn",
    counted_as="group_norm",
    timm=lambda n: ("GroupNormAct", {"num_groups": n.num_groups, "eps": n.eps}),
    groups=lambda spec_groups, channels: spec_groups,
)

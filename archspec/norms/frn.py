"""Filter Response Normalization with a Thresholded Linear Unit (Singh & Krishnan, 2020), as timm's
FilterResponseNormTlu2d: y = gamma * x / sqrt(mean_hw(x^2) + eps) + beta, then max(y, tau) where
an activation follows. Per sample and channel, so it does not depend on the batch. The TLU is the
layer's activation: it replaces the spec's (the paper's point: FRN needs a learned threshold)."""

from . import NormKind

KIND = NormKind(
    name="frn",
    summary="filter response norm + TLU",
    fields=("eps",),
    batch_dependent=False,
    proxy=False,
    module="FilterResponseNormTlu2d",
    arguments=lambda n: ((n.channels,), {"eps": n.eps, "tlu": n.activation is not None}),
    kernel_class="frn",
    counted_as="none",  # pow, mean, rsqrt, mul, add, max: elementwise ops the counters skip
    torchinfo_per_channel=2,  # its TLU is no child module: a leaf with weight and bias
    ops_per_element=5,  # square, mean, scale by 1/nu, multiply gamma, add beta
    own_activation="tlu",
    activation_params_per_channel=1,  # tau
    timm=lambda n: ("FilterResponseNormTlu2d", {"eps": n.eps}),
)

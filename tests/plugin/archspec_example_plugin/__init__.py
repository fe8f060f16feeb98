"""A user's package that extends archspec without editing it (tests/test_plugins.py): a norm
(`rms`: RMS normalization per sample over C, H, W) and a backend (`layer-list`: writes the IR as a
text table, and "trains" by one SGD step), registered through entry points (see the dist-info
directory beside this package)."""

from archspec.backend import BackendKind
from archspec.norms import NormKind

RMS = NormKind(
    name="rms",
    summary="RMS norm per sample over (C, H, W), per-channel affine",
    fields=("eps",),
    batch_dependent=False,
    proxy=False,
    module="RMSNormAct",
    arguments=lambda n: ((n.channels,), {"eps": n.eps, "activation": n.activation}),
    kernel_class="rms",
    counted_as="none",
    ops_per_element=5,  # square, mean, scale by 1/rms, multiply gamma, add beta
    source="archspec_example_plugin.torch_norm",
)

LAYER_LIST = BackendKind(
    name="layer-list",
    summary="the IR as a text table; training is one SGD step",
    files="archspec_example_plugin.backend:files",
    train="archspec_example_plugin.backend:train",
)

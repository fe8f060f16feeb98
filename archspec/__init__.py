"""archspec: a declarative architecture-spec compiler for efficient convolutional networks.

spec  = archspec.load_spec("specs/b0_g16.yaml")   # or a dict; raises archspec.SpecError
res   = archspec.resolve(spec)
graph = archspec.build_graph(res)                 # networkx.DiGraph
st    = archspec.stats(spec, resolution=224)      # .params .macs .flops (ints)
model = archspec.build_model(spec)                # torch.nn.Module (imports torch lazily)
"""

from __future__ import annotations

from ._version import __version__
from .api import as_graph, as_resolved, build_model, stats
from .errors import SpecError
from .graph import build_graph
from .resolve import ResolvedSpec, resolve
from .spec import ModelSpec, load_spec

__all__ = [
    "ModelSpec",
    "ResolvedSpec",
    "SpecError",
    "__version__",
    "as_graph",
    "as_resolved",
    "build_graph",
    "build_model",
    "load_spec",
    "resolve",
    "stats",
]

"""What `archspec export` prints."""

from __future__ import annotations

import sys
from typing import Any

from archspec.cost import human

from . import console

WRITTEN_BY = {
    "dynamo": "torch.onnx.export, dynamo exporter",
    "legacy": "torch.onnx.export, legacy TorchScript-based exporter",
    "torchscript": "torch.jit.script",
    "exported-program": "torch.export",
}


def _what(p: dict[str, Any]) -> str:
    if p["format"] == "onnx":
        return f"ONNX opset {p['opset']} ({WRITTEN_BY[p['exporter']]})"
    name = "TorchScript" if p["format"] == "torchscript" else "exported program"
    return f"{name} ({WRITTEN_BY[p['format']]})"


def _weights(p: dict[str, Any]) -> str:
    if p["weights_file"] is None:
        return f"initial weights ({p['weights_are']})"
    return f"weights {p['weights_file']} ({p['weights_are']})"


def export_summary(p: dict[str, Any]) -> None:
    out = console(110)
    shape = "x".join("N" if v == "batch" else str(v) for v in p["input_shape"]) + " (any N)" * p["dynamic_batch"]
    out.print(
        f"wrote {p['out']} ({human(p['bytes'], 'B')}): {p['name']} at {p['resolution']} px as {_what(p)}, "
        f"input {shape}, {_weights(p)}",
        soft_wrap=True,
    )
    folded = p["folded_bn"]
    form = "BN kept (--no-fold)" if folded is None else f"{folded} BN layers folded into the convs before them"
    out.print(f"inference form: {form}{', channels_last' if p['channels_last'] else ''}", soft_wrap=True)
    sizes = [str(c["batch"]) for c in p["checks"]]
    batches = f"random batches of {' and '.join(sizes)}" if len(sizes) > 1 else f"a random batch of {sizes[0]}"
    logits = max(c["max_abs_logit"] for c in p["checks"])
    verdict = "within" if p["ok"] else "MORE than"
    out.print(
        f"check: {p['checked_by']} against the eager, unfolded model on {batches}: largest "
        f"|difference| {p['max_abs_diff']:.2e} (|logits| up to {logits:.3g}), {verdict} the tolerance "
        f"{p['tolerance']:.0e}",
        soft_wrap=True,
    )


def check_failed(p: dict[str, Any]) -> None:
    sys.stderr.write(
        f"archspec export: {p['out']} differs from the eager model by {p['max_abs_diff']:.2e}, more than the "
        f"tolerance {p['tolerance']:.0e}\n"
    )

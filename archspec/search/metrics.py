"""The metrics a search can optimize or bound, and the cheap ones computed here (pure: no torch).

Each metric has a kind, and kinds are computed cheapest first, so that a candidate that breaks a
limit on a cheap metric is never timed or trained:

    cost       params, macs, activation_bytes: the IR's analytic cost
    predicted  predicted_*: archspec.predict over the IR and a device profile (`--profile FILE`)
    zero_cost  synflow, naswot, grad_norm: scores of the untrained network on one minibatch of the
               proxy's dataset (runner/zero_cost.py, torch)
    measured   measured_*: `archspec bench` on the search's `measure:` device (evaluate.py, torch)
    accuracy   proxy training with the shared runner (evaluate.py, torch)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import networkx as nx

from ..cost import totals

Kind = Literal["cost", "predicted", "zero_cost", "measured", "accuracy"]
ORDER: dict[str, int] = {"cost": 0, "predicted": 1, "zero_cost": 2, "measured": 3, "accuracy": 4}
NEEDS_DATA = ("zero_cost", "accuracy")  # the kinds that read the proxy's dataset
# A trial's two user attributes (one write each: a journal write is an fsync):
CLAIM = "claim"  # {worker, network (digest), evaluating, matched_expansion_ratio}: set under the claim lock
RESULT = "result"  # {metrics: {name: value}, evaluated_s | reused_from, reason (pruned), error (failed), *JUDGED}
# with accuracy: where it was judged (pixels), after a fine-tune or not, and each proxy seed's accuracy
JUDGED = ("accuracy_resolution", "finetuned", "accuracy_by_seed")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    label: str  # an axis label
    scale: float  # shown divided by this
    unit: str  # of the scaled value
    short: str  # a column header

    @property
    def order(self) -> int:
        return ORDER[self.kind]

    def shown(self, value: float) -> str:
        return f"{value / self.scale:.4g}{self.unit}"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("params", "cost", "parameters (M)", 1e6, "M", "params"),
        Metric("macs", "cost", "MACs (G)", 1e9, "G", "MACs"),
        Metric("activation_bytes", "cost", "activation memory per image (MB)", 1e6, "MB", "act. mem"),
        Metric("predicted_train_images_per_s", "predicted", "predicted train images/s", 1, "", "pred. train img/s"),
        Metric("predicted_infer_images_per_s", "predicted", "predicted inference images/s", 1, "", "pred. infer img/s"),
        Metric("predicted_latency_ms", "predicted", "predicted latency (ms, batch 1)", 1, "ms", "pred. latency"),
        Metric("synflow", "zero_cost", "ln synflow (untrained)", 1, "", "synflow"),
        Metric("naswot", "zero_cost", "NASWOT score (untrained)", 1, "", "naswot"),
        Metric("grad_norm", "zero_cost", "gradient norm (untrained)", 1, "", "grad norm"),
        Metric("measured_train_images_per_s", "measured", "measured train images/s", 1, "", "train img/s"),
        Metric("measured_infer_images_per_s", "measured", "measured inference images/s", 1, "", "infer img/s"),
        Metric("measured_latency_ms", "measured", "measured latency (ms, batch 1)", 1, "ms", "latency"),
        Metric("accuracy", "accuracy", "top-1 accuracy (%)", 0.01, "%", "top-1"),
    )
}

# predicted_* metric -> the field of archspec.predict.Prediction it reads
PREDICTED = {
    "predicted_train_images_per_s": "train_images_per_s",
    "predicted_infer_images_per_s": "infer_images_per_s",
    "predicted_latency_ms": "latency_ms",
}


def metric_names() -> list[str]:
    return list(METRICS)


def cost_metrics(g: nx.DiGraph[str]) -> dict[str, float]:
    """params, MACs and activation bytes of one image (fp32) from the IR."""
    cost = totals(g)
    return {"params": cost.params, "macs": cost.macs, "activation_bytes": cost.activation_bytes()}


def predicted_metrics(g: nx.DiGraph[str], profile: Any, batch_size: int, wanted: list[str]) -> dict[str, float]:
    """The predicted_* metrics in `wanted`, from a profile read by archspec.predict.load_profile."""
    names = [m for m in wanted if m in PREDICTED]
    if not names:
        return {}
    from ..predict import predict

    prediction = predict(g, profile, batch_size)
    out: dict[str, float] = {}
    for name in names:
        value: Optional[float] = getattr(prediction, PREDICTED[name])
        if value is not None:
            out[name] = float(value)
    return out

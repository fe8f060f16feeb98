"""A recording stand-in for PopTorch, for tests only (the Poplar SDK cannot be installed here).

It records every call the generated program makes (block placements, options, optimizer
arguments, recomputation checkpoints) and runs the model on the CPU in float32 so that the
program executes end to end. At exit it writes the record to $POPTORCH_STUB_LOG as JSON.
"""

from __future__ import annotations

import atexit
import enum
import json
import os
import types

import torch

RECORD: dict = {"blocks": [], "options": [], "optimizer": None, "checkpoints": 0, "training_calls": 0,
                "inference_calls": 0, "set_optimizer": 0, "dataloaders": []}
_BLOCKS: list = []  # (module, user_id, ipu_id): resolved to module paths when the model is wrapped


def _dump() -> None:
    path = os.environ.get("POPTORCH_STUB_LOG")
    if path:
        with open(path, "w") as f:
            json.dump(RECORD, f, indent=1, default=str)


atexit.register(_dump)


class ReductionType(enum.IntEnum):
    Sum = 0
    Mean = 1
    NoReduction = 2


class AutoStage(enum.IntEnum):
    SameAsIpu = 0
    AutoIncrement = 1


class PipelinedExecution:
    def __init__(self, *args):
        self.args = [a.name if isinstance(a, enum.Enum) else a for a in args]

    def __repr__(self):
        return f"PipelinedExecution({', '.join(map(str, self.args))})"


def _value(v):
    if isinstance(v, enum.Enum):
        return v.name
    if isinstance(v, torch.dtype):
        return str(v)
    return v if isinstance(v, (int, float, str, bool, dict, list)) or v is None else repr(v)


class _Recorder:
    def __init__(self, owner: "Options", prefix: str):
        self._owner, self._prefix = owner, prefix

    def __getattr__(self, name):
        def call(*args, **kwargs):
            RECORD["options"].append([self._prefix + name, [_value(a) for a in args],
                                      {k: _value(v) for k, v in kwargs.items()}])
            self._owner.values[self._prefix + name] = args[0] if len(args) == 1 else args
            return self._owner
        return call


class Options:
    def __init__(self):
        self.values: dict = {}
        self.Training = _Recorder(self, "Training.")
        self.Precision = _Recorder(self, "Precision.")
        self._calls = _Recorder(self, "")

    def __getattr__(self, name):
        return getattr(self.__dict__["_calls"], name)


def BeginBlock(layer_to_call, user_id=None, ipu_id=None):
    _BLOCKS.append((layer_to_call, user_id, ipu_id))
    return layer_to_call


def recomputationCheckpoint(*tensors):
    RECORD["checkpoints"] += 1
    return tensors[0] if len(tensors) == 1 else tensors


def _resolve_blocks(model: torch.nn.Module) -> None:
    paths = {id(m): name for name, m in model.named_modules()}
    RECORD["blocks"] = [[paths.get(id(m), "?"), user, ipu] for m, user, ipu in _BLOCKS]


class _Optim(types.ModuleType):
    class RMSprop(torch.optim.RMSprop):
        def __init__(self, params, lr, alpha, eps, momentum, use_tf_variant, accum_type,
                     first_order_momentum_accum_type, second_order_momentum_accum_type, weight_decay=0.0):
            RECORD["optimizer"] = {
                "lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum, "use_tf_variant": use_tf_variant,
                "accum_type": str(accum_type), "first_order_momentum_accum_type": str(first_order_momentum_accum_type),
                "second_order_momentum_accum_type": str(second_order_momentum_accum_type)}
            super().__init__(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)


optim = _Optim("poptorch.optim")


def _combined(options: Options) -> int:
    v = options.values
    return v.get("deviceIterations", 1) * v.get("replicationFactor", 1) * v.get("Training.gradientAccumulation", 1)


class DataLoader(torch.utils.data.DataLoader):
    def __init__(self, options, dataset, batch_size=1, **kwargs):
        RECORD["dataloaders"].append({"batch_size": batch_size, "combined": _combined(options)})
        super().__init__(dataset, batch_size=batch_size * _combined(options), **kwargs)


class _Trainer:
    def __init__(self, model, options, optimizer):
        _resolve_blocks(model)
        self.model, self.optimizer = model.float().train(), optimizer

    def __call__(self, x, labels):
        RECORD["training_calls"] += 1
        self.optimizer.zero_grad()
        logits, loss = self.model(x.float(), labels)
        loss.backward()
        self.optimizer.step()
        return logits, loss

    def setOptimizer(self, optimizer):
        RECORD["set_optimizer"] += 1

    def detachFromDevice(self):
        RECORD["detached"] = True


def trainingModel(model, options=None, optimizer=None):
    return _Trainer(model, options, optimizer)


def inferenceModel(model, options=None):
    model = model.float().eval()

    def run(x):
        RECORD["inference_calls"] += 1
        with torch.no_grad():
            return model(x.float())
    return run

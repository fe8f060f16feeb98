"""Training recipes: the paper's recipe as the default, readable YAML files that override it, and
flags that override both.

The paper (section 3.4): RMSProp with TF semantics, lr = B * 2^-14, momentum 0.9, decay
1 - B * 2^-14, eps 1e-3; lr x 0.97 every 2.4 epochs after a warm-up; weight decay 1e-5 on conv
weights; label smoothing 0.1; Mixup + CutMix; weights averaged with decay 0.97 per epoch; global
batch B = 768; fine-tuning for 2 epochs with SGD, cosine lr from 0.25, global batch 512.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator

from ..reader import RECIPE, read_yaml
from ..validation import SourceMap, Strict, validate

Auto = Literal["auto"]


class OptimizerRecipe(Strict):
    name: Literal["rmsprop_tf", "sgd"] = Field("rmsprop_tf", description="rmsprop_tf (the paper) or sgd.")
    lr: Union[Auto, float] = Field("auto", description="auto: B * 2^-14 (paper).")
    momentum: float = Field(0.9, ge=0, lt=1)
    decay: Union[Auto, float] = Field("auto", description="RMSProp decay; auto: 1 - B * 2^-14 (paper).")
    eps: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(1e-5, ge=0, le=1)

    @field_validator("lr", "decay")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if value != "auto" and not 0 < value < 100:
            raise ValueError(f"must be 'auto' or a number in (0, 100), got {value!r}")
        return value


class ScheduleRecipe(Strict):
    shape: Literal["step", "cosine"] = Field(
        "step",
        description="step: the paper's (x decay_rate every decay_every_epochs); cosine: from lr down to 0 at the "
        "run's last step, for short runs judged on their last weights (search proxies).",
    )
    warmup_epochs: float = Field(5.0, ge=0, le=1000)
    decay_every_epochs: float = Field(2.4, gt=0, le=1000, description="step only.")
    decay_rate: float = Field(0.97, gt=0, le=1, description="step only.")


class AugmentRecipe(Strict):
    crop_scale: list[float] = Field(
        [0.08, 1.0], min_length=2, max_length=2, description="RandomResizedCrop area range [min, max]."
    )
    hflip: bool = True
    mixup_alpha: float = Field(0.2, ge=0, le=10)
    cutmix_alpha: float = Field(1.0, ge=0, le=10)
    mix_prob: float = Field(1.0, ge=0, le=1, description="Probability of Mixup or CutMix per batch.")

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, value: list[float]) -> list[float]:
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError(f"must be two numbers with 0 < min <= max <= 1, got {value}")
        return value


class FinetuneRecipe(Strict):
    epochs: float = Field(2.0, gt=0, le=1000)
    global_batch_size: int = Field(512, ge=1, le=1 << 20)
    micro_batch_size: Optional[int] = Field(None, ge=1, le=1 << 16)
    lr: float = Field(0.25, gt=0, le=100)
    momentum: float = Field(0.0, ge=0, lt=1, description="0: vanilla SGD, as the paper.")
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class SyntheticRecipe(Strict):
    train_size: int = Field(10_000, ge=10, le=10_000_000)
    val_size: int = Field(2_000, ge=10, le=1_000_000)
    classes: int = Field(10, ge=2, le=10)
    canvas: int = Field(128, ge=16, le=1024, description="Pixels each image is rendered at.")


class Recipe(Strict):
    """Everything about how a run trains; the spec says what it trains."""

    epochs: float = Field(350, gt=0, le=100_000)
    global_batch_size: int = Field(768, ge=1, le=1 << 20)
    optimizer: OptimizerRecipe = Field(default_factory=OptimizerRecipe)
    schedule: ScheduleRecipe = Field(default_factory=ScheduleRecipe)
    augment: AugmentRecipe = Field(default_factory=AugmentRecipe)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    ema_decay_per_epoch: float = Field(0.97, ge=0, lt=1)
    checkpoint_every_steps: int = Field(500, ge=1, le=10_000_000)
    log_every_steps: int = Field(10, ge=1, le=1_000_000)
    log_every_seconds: float = Field(
        30.0, gt=0, le=86_400, description="Without a terminal: a log line at least this often."
    )
    eval_every_epochs: int = Field(1, ge=1, le=1000, description="Evaluate the EMA weights every N epochs.")
    num_workers: Union[Auto, Annotated[int, Field(ge=0, le=64)]] = "auto"
    bf16_on_gpu: bool = True
    channels_last_on_gpu: bool = True
    finetune: FinetuneRecipe = Field(default_factory=FinetuneRecipe)
    synthetic: SyntheticRecipe = Field(default_factory=SyntheticRecipe)

    def crop_scale(self) -> tuple[float, float]:
        low, high = self.augment.crop_scale
        return low, high

    def learning_rate(self, global_batch: Optional[int] = None) -> float:
        batch = global_batch or self.global_batch_size
        return batch * 2**-14 if self.optimizer.lr == "auto" else self.optimizer.lr

    def rmsprop_decay(self, global_batch: Optional[int] = None) -> float:
        if self.optimizer.decay != "auto":
            return self.optimizer.decay
        return max(1 - (global_batch or self.global_batch_size) * 2**-14, 0.5)


def load_recipe(path: Union[str, Path, None] = None, overrides: Optional[dict[str, Any]] = None) -> Recipe:
    """The paper's recipe, then the file's fields, then `overrides` (dotted keys allowed)."""
    data: dict[str, Any] = {}
    source = SourceMap(root_file="<recipe>")
    if path is not None:
        doc = read_yaml(path, RECIPE)
        data, source = doc.data, SourceMap(doc.file, doc.value_at, doc.key_at, (doc.file,))
    for key, value in (overrides or {}).items():
        target = data
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return validate(Recipe, data, source)


def backend_options(recipe: Path | None) -> dict[str, Any]:
    """A recipe as a backend that trains on its own takes it (archspec.backend): its text and its
    global batch, as data, since backends never import the runner."""
    loaded = load_recipe(recipe)
    return {"recipe_text": recipe_yaml(loaded), "global_batch": loaded.global_batch_size}


def recipe_yaml(recipe: Recipe) -> str:
    import yaml

    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)

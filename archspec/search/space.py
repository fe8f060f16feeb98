"""The search file: its schema, loading it with located errors, and the mapping of a point of the
space to a ModelSpec. Pure: no torch, no Optuna (the study imports this, never the reverse).

A point is a dict {dimension name: value}, the names being Optuna's parameter names
(`group_size`, `norm`, `stages[3].kernel`, ...). `Search.candidate(point)` applies it to the base
spec (the same validation as any spec), FLOP-matches the expansion ratio when the space says
`expansion_ratio: match`, keeps the test resolutions congruent to the training resolution, resolves
it, and names the network by a digest of what decides its metrics, so that points which round to
the same network are evaluated once.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from ..cost import totals
from ..errors import FieldPath, SpecError
from ..graph import build_graph
from ..limits import MAX_EXPANSION, MIN_EXPANSION
from ..match import match_expansion
from ..presets import PRESET_NAMES
from ..reader import SEARCH, read_yaml
from ..resolution import congruent, valid_test_resolutions
from ..resolve import ResolvedSpec, resolve
from ..spec import NAME_PATTERN, ModelSpec, NormType, base_file, load_spec, spec_roots
from ..validation import SourceMap, Strict, did_you_mean, validate
from .metrics import METRICS, NEEDS_DATA, metric_names

MAX_CHOICES = 1000  # of one dimension
MAX_POINTS = 10**9  # of the whole space (Optuna's grid lists every point)


class Steps(Strict):
    """`{min: 2, max: 6, step: 0.5}`: min, min + step, ... up to max (inclusive)."""

    min: float
    max: float
    step: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Steps:
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is larger than max ({self.max:g})")
        if (self.max - self.min) / self.step + 1 > MAX_CHOICES:
            raise ValueError(f"gives more than {MAX_CHOICES} values; take a larger step")
        return self

    def values(self, integer: bool) -> list[Any]:
        n = math.floor((self.max - self.min) / self.step + 1e-9)
        out = [round(self.min + i * self.step, 10) for i in range(n + 1)]
        return [int(v) for v in out] if integer else [float(v) for v in out]


Ints = Union[list[int], Steps]
Floats = Union[list[float], Steps]
TrainResolution = Union[Literal["native", "half"], int]


class StageDims(Strict):
    """Choices for one stage's (or, with `stage: all`, every stage's) kernel, repeats and SE ratio."""

    stage: Union[int, Literal["all"]] = Field(description="A stage index of the base (0 = first), or 'all'.")
    kernel: Optional[Ints] = None
    repeats: Optional[Ints] = None
    se_ratio: Optional[Floats] = None


class Space(Strict):
    """The dimensions searched; each a list of choices or {min, max, step}. Dimensions not given
    keep the base's value."""

    group_size: Optional[Ints] = Field(None, description="Group size of every spatial conv.")
    expansion_ratio: Optional[Union[Literal["match"], Floats]] = Field(
        None, description="Global expansion ratio, or 'match': the E that matches the base's cost (see match:)."
    )
    norm: Optional[list[NormType]] = Field(None, description="Normalization types: bn | gn | ln | gn+pn | ln+pn.")
    resolution: Optional[list[TrainResolution]] = Field(
        None, description="Training resolution: native | half | pixels; test resolutions are kept congruent."
    )
    width_multiplier: Optional[Floats] = None
    depth_multiplier: Optional[Floats] = None
    stages: list[StageDims] = Field(default_factory=list, description="Per-stage kernel / repeats / se_ratio.")


class MatchSettings(Strict):
    """How `expansion_ratio: match` matches: the base's MACs or params, E searched in [min, max]."""

    metric: Literal["macs", "params"] = "macs"
    min: float = Field(MIN_EXPANSION, ge=MIN_EXPANSION, le=MAX_EXPANSION)
    max: float = Field(8.0, ge=MIN_EXPANSION, le=MAX_EXPANSION)


class Objective(Strict):
    metric: str = Field(description="A metric name (archspec search --help lists them).")
    direction: Literal["minimize", "maximize"]

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METRICS:
            hint = did_you_mean(value, metric_names())
            raise ValueError(f"unknown metric {value!r}{hint}; metrics are {', '.join(metric_names())}")
        return value


class Bound(Strict):
    min: Optional[float] = None
    max: Optional[float] = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        """YAML reads 2.0e8 (no sign in the exponent) as a string: a bound takes it as the number it means."""
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"contradictory: min {self.min:g} is larger than max {self.max:g}, so nothing can satisfy it"
            )
        return self

    def broken_by(self, value: float) -> Optional[str]:
        if self.min is not None and value < self.min:
            return f">= {self.min:g}"
        if self.max is not None and value > self.max:
            return f"<= {self.max:g}"
        return None


class Proxy(Strict):
    """Accuracy by proxy training with the shared runner (`archspec train`)."""

    dataset: str = Field("synthetic", description="'synthetic' (the built-in set) or a directory with train/ and val/.")
    steps: int = Field(300, ge=1, le=10_000_000, description="Optimizer steps per candidate.")
    batch_size: int = Field(32, ge=1, le=1 << 16)
    resolution: Union[Literal["test", "train", "best"], int] = Field(
        "test",
        description="Where accuracy is judged (deployed): test = the base's first test resolution; train = where "
        "each candidate trains; best = the best congruent resolution up to best_up_to; or pixels. A candidate "
        "that trains elsewhere is fine-tuned there first (its last blocks, as `archspec finetune`).",
    )
    best_up_to: Optional[int] = Field(None, ge=8, le=4096, description="With resolution: best, the largest tried.")
    finetune_steps: int = Field(24, ge=1, le=1_000_000, description="Optimizer steps of each fine-tune.")
    finetune_blocks: int = Field(2, ge=1, le=16, description="Blocks fine-tuned (1 = the head; as finetune --blocks).")
    recipe: Optional[str] = Field(None, description="A recipe file (default: the paper's), relative to this file.")
    seed: int = Field(0, ge=0)
    repeats: int = Field(
        1,
        ge=1,
        le=16,
        description="Proxy runs per candidate, seeded seed, seed + 1, ...; accuracy is their mean (a short run's "
        "accuracy moves from seed to seed by more than close candidates differ).",
    )
    device: Literal["cpu", "cuda"] = "cpu"
    weights: Literal["raw", "ema"] = Field("raw", description="Weights evaluated (a short run's EMA lags).")
    train_images: Optional[int] = Field(None, ge=10, le=10_000_000, description="Synthetic set: training images.")
    val_images: int = Field(1000, ge=10, le=1_000_000, description="Synthetic set: validation images.")

    @model_validator(mode="after")
    def _bound(self) -> Proxy:
        if (self.resolution == "best") != (self.best_up_to is not None):
            raise ValueError("best_up_to goes with resolution: best, and best needs it")
        return self


class Measure(Strict):
    """How `measured_*` metrics are timed (`archspec bench`)."""

    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = Field(32, ge=1, le=1 << 16)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="bench times float32 on a CPU and bfloat16 autocast on a GPU (auto)."
    )
    steps: int = Field(10, ge=1, le=10_000, description="Timed batches after warm-up.")

    @model_validator(mode="after")
    def _dtype(self) -> Measure:
        timed = {"cpu": "float32", "cuda": "bfloat16"}[self.device]
        if self.dtype not in ("auto", timed):
            raise ValueError(f"bench times {timed} on {self.device}; {self.dtype} is not available there")
        return self


class Budget(Strict):
    trials: Optional[int] = Field(None, ge=1, le=1_000_000, description="Trials in all (every worker together).")
    minutes: Optional[float] = Field(None, gt=0, le=525_600, description="Wall-clock minutes of one invocation.")


class Fidelity(Strict):
    """Successive-halving rungs over the proxy's steps (search/rungs.py)."""

    rungs: list[float] = Field(
        min_length=1,
        max_length=10,
        description="Fractions of proxy.steps, increasing, the last 1 (e.g. [0.111, 0.333, 1]).",
    )
    keep: float = Field(1 / 3, gt=0, lt=1, description="The fraction of a rung promoted to the next.")

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(not 0 < r <= 1 for r in value) or any(a >= b for a, b in itertools.pairwise(value)) or value[-1] != 1:
            raise ValueError(f"must increase within (0, 1] and end at 1 (all of proxy.steps), got {value}")
        return value


class SearchFile(Strict):
    """A search file, as written."""

    name: str = Field("search", pattern=NAME_PATTERN)
    description: Optional[str] = Field(None, max_length=2000)
    base: str = Field(description="A spec file (relative to this file) or a preset name.")
    fixed: dict[str, Any] = Field(default_factory=dict, description="Spec fields every candidate sets over the base.")
    space: Space
    match: Optional[MatchSettings] = None
    objectives: list[Objective] = Field(min_length=1, max_length=6)
    constraints: dict[str, Bound] = Field(default_factory=dict)
    proxy: Proxy = Field(default_factory=Proxy)
    fidelity: Optional[Fidelity] = Field(None, description="Rungs of proxy steps; default: one, all of them.")
    measure: Measure = Field(default_factory=Measure)
    budget: Budget = Field(default_factory=Budget)
    sampler: Literal["auto", "grid", "nsga2"] = Field(
        "auto", description="auto: Optuna's GridSampler when the whole space fits the budget, else NSGA-II."
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)


# --------------------------------------------------------------------------------------------
# dimensions


@dataclass(frozen=True)
class Dimension:
    name: str  # Optuna's parameter name
    choices: tuple[Any, ...]
    at: FieldPath  # where the choices are written in the search file

    def apply(self, data: dict[str, Any], value: Any) -> None:
        """Set this dimension's value in a spec mapping."""
        if self.name == "norm":
            data["norm"] = {**data.get("norm", {}), "type": value}
        elif self.name == "resolution":
            data["resolution"] = {**data.get("resolution", {}), "train": value}
        elif self.name.startswith("stages["):
            index, field = re.fullmatch(r"stages\[(\d+|\*)\]\.(\w+)", self.name).groups()  # type: ignore[union-attr]
            targets = data["stages"] if index == "*" else [data["stages"][int(index)]]
            for stage in targets:
                stage[field] = value
        else:
            data[self.name] = value


def _choices(value: Any, integer: bool, at: FieldPath, source: SourceMap) -> list[Any]:
    if not isinstance(value, Steps):
        return list(value)
    values = value.values(False)
    if integer and any(v != int(v) for v in values):
        raise source.error(at, f"must step through integers, got {', '.join(f'{v:g}' for v in values[:4])}, ...")
    return [int(v) for v in values] if integer else values


def dimensions(space: Space, stages: int, source: SourceMap) -> list[Dimension]:
    """The space's dimensions in a fixed order; errors located in the search file."""
    out: list[Dimension] = []
    integer = {"group_size": True, "width_multiplier": False, "depth_multiplier": False}
    for name in ("group_size", "expansion_ratio", "norm", "resolution", "width_multiplier", "depth_multiplier"):
        value = getattr(space, name)
        if value is None or value == "match":
            continue
        top: FieldPath = ("space", name)
        out.append(Dimension(name, tuple(_choices(value, integer.get(name, False), top, source)), top))
    seen: set[str] = set()
    for i, dims in enumerate(space.stages):
        if dims.stage != "all" and not 0 <= dims.stage < stages:
            raise source.error(
                ("space", "stages", i, "stage"), f"the base has {stages} stages (0 to {stages - 1}), not {dims.stage}"
            )
        label = "*" if dims.stage == "all" else str(dims.stage)
        for field in ("kernel", "repeats", "se_ratio"):
            value = getattr(dims, field)
            if value is None:
                continue
            name = f"stages[{label}].{field}"
            if name in seen:
                raise source.error(("space", "stages", i, field), f"{name} is searched twice")
            seen.add(name)
            at: FieldPath = ("space", "stages", i, field)
            out.append(Dimension(name, tuple(_choices(value, field != "se_ratio", at, source)), at))
    for d in out:
        if not d.choices:
            raise source.error(d.at, "give at least one choice")
        if len(d.choices) > MAX_CHOICES:
            raise source.error(d.at, f"at most {MAX_CHOICES} choices")
        repeated = sorted({repr(c) for c in d.choices if d.choices.count(c) > 1})
        if repeated:
            raise source.error(d.at, f"repeated choice {', '.join(repeated)}")
    return out


# --------------------------------------------------------------------------------------------
# a candidate network


@dataclass(frozen=True)
class Candidate:
    point: dict[str, Any]
    spec: ModelSpec
    resolved: ResolvedSpec
    digest: str  # what decides every metric: the resolved network and its training resolution
    matched_expansion: Optional[float]  # the E that `expansion_ratio: match` chose


def judged_resolutions(p: Proxy, res: ResolvedSpec) -> list[int]:
    """The resolutions a network is judged at (the best of them kept); [] when none is congruent
    with its training resolution, so it cannot be deployed where the search asks."""
    r, n = res.resolution, res.downsampling_layers
    if p.resolution == "train":
        return [r.train]
    if p.resolution == "test":  # the base's first test resolution, kept congruent by Search.candidate
        return [r.test[0]]
    if p.resolution == "best":
        assert p.best_up_to is not None  # the schema requires it with best
        return [x for x in valid_test_resolutions(r.train, n, p.best_up_to) if x >= r.train]
    return [p.resolution] if congruent(p.resolution, r.train, n) else []


def unreachable(p: Proxy, res: ResolvedSpec) -> str:
    """Why `judged_resolutions` is empty, said as a pruning reason."""
    r, step = res.resolution.train, 1 << res.downsampling_layers
    if p.resolution == "best":
        return f"trains at {r} px, above proxy.best_up_to ({p.best_up_to} px)"
    return f"trains at {r} px: {p.resolution} px is not congruent with it (mod {step}), so it cannot be deployed there"


def network_digest(res: ResolvedSpec) -> str:
    """A digest of the resolved network: the layers as built (not the values requested, which
    rounding may have mapped to the same layers), the norm, the head and the training resolution."""
    blocks = [(*b.layers_key, round(b.drop_path, 9)) for b in res.blocks]
    described = {
        "stem": asdict(res.stem),
        "blocks": blocks,
        "head": [res.head_channels, res.head_in_channels, res.dropout],
        "norm": asdict(res.norm),
        "activation": res.activation,
        "io": [res.in_channels, res.num_classes],
        "train_resolution": res.resolution.train,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _nearest_congruent(target: int, train: int, n: int) -> int:
    options = valid_test_resolutions(train, n, max(target, train) + (1 << n))
    return min(options, key=lambda r: (abs(r - target), -r))


@dataclass
class Search:
    """A loaded search file: the schema's values, where each was written, and the base spec."""

    file: SearchFile
    source: SourceMap
    path: Path
    base: ModelSpec  # with `fixed:` applied
    dims: list[Dimension]
    recipe_text: Optional[str]  # the proxy recipe, validated and with the proxy's settings, as YAML
    dataset: Optional[Path]  # the proxy's image folders; None: the synthetic set

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def metrics(self) -> list[str]:
        """Every metric a trial needs (objectives, then constrained ones), cheapest kind first."""
        wanted = [o.metric for o in self.file.objectives] + [
            m for m in self.file.constraints if m not in [o.metric for o in self.file.objectives]
        ]
        return sorted(wanted, key=lambda m: METRICS[m].order)

    @property
    def rung_steps(self) -> list[int]:
        """Proxy steps at each rung; one rung without `fidelity:`."""
        f, steps = self.file.fidelity, self.file.proxy.steps
        return [max(1, round(r * steps)) for r in f.rungs] if f else [steps]

    @property
    def val_images(self) -> int:
        return images(self.dataset, "val") if self.dataset else self.file.proxy.val_images

    @property
    def size(self) -> int:
        return math.prod(len(d.choices) for d in self.dims)

    @cached_property
    def match_target(self) -> tuple[int, str, int]:
        """(cost, metric, pixels) of the base that `expansion_ratio: match` matches every point to."""
        settings = self.file.match or MatchSettings()
        res = resolve(self.base)
        cost = totals(build_graph(res))
        return (cost.params if settings.metric == "params" else cost.macs), settings.metric, res.resolution.train

    def spec_at(self, point: dict[str, Any], name: Optional[str] = None) -> ModelSpec:
        """The base with `point` applied and validated (the expansion ratio not matched yet)."""
        data = self.base.model_dump(mode="json", exclude_none=True)
        data.pop("base", None)
        data["stages"] = copy.deepcopy(data["stages"])
        for d in self.dims:
            if d.name in point:
                d.apply(data, point[d.name])
        if name is not None:
            data["name"] = name
        return validate(ModelSpec, data, SourceMap(root_file="<dict>"))

    def candidate(self, point: dict[str, Any], name: Optional[str] = None) -> Candidate:
        """The network at `point`. Raises SpecError (unlocated) when the combination is not a valid network."""
        spec = self.spec_at(point, name)
        matched = None
        if self.file.space.expansion_ratio == "match":
            settings = self.file.match or MatchSettings()
            target, metric, pixels = self.match_target
            chosen = match_expansion(spec, target, metric, settings.min, settings.max, resolution=pixels).chosen  # type: ignore[arg-type]
            matched = chosen.expansion_ratio
            spec = spec.model_copy(update={"expansion_ratio": matched})
        res = resolve(spec)
        r = res.resolution
        tests = list(dict.fromkeys(_nearest_congruent(t, r.train, res.downsampling_layers) for t in r.test))
        if list(spec.resolution.test) != tests:
            spec = spec.model_copy(update={"resolution": spec.resolution.model_copy(update={"test": tests})})
            res = resolve(spec)
        return Candidate(dict(point), spec, res, network_digest(res), matched)


# --------------------------------------------------------------------------------------------
# loading


def _base_mapping(f: SearchFile, here: Path, source: SourceMap) -> dict[str, Any]:
    base = f.base
    if base not in PRESET_NAMES:
        # read only within the search file's own tree, the directory it is run from (the shipped
        # searches base on ../specs) and the spec roots: never /etc/passwd or ../../ elsewhere
        at = {"field": ("base",), "location": source.locate(("base",)), "file": source.root_file}
        roots = tuple(dict.fromkeys((here.resolve(), Path.cwd().resolve(), *spec_roots())))
        path = base_file(base, here, roots, at)
        if not path.is_file():
            hint = did_you_mean(base, list(PRESET_NAMES))
            raise source.error(("base",), f"no spec file {base!r} (looked for {path}) and no such preset{hint}")
        base = str(path)
    return {"name": f.name, **copy.deepcopy(f.fixed), "base": base}


def _parse_path(text: str) -> FieldPath:
    """`stages[2].stride` -> ("stages", 2, "stride")."""
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", text))


def _located(exc: SpecError, source: SourceMap, prefix: FieldPath, what: str) -> SpecError:
    """A spec error raised on a mapping built from the search file, pointed back at the search file."""
    if exc.location is not None and exc.location.file != "<dict>":
        return exc  # in the base spec file itself: that location is the right one
    path = _parse_path(exc.field or "")
    message = f"{what}: {exc.field}: {exc.message}" if exc.field else f"{what}: {exc.message}"
    return SpecError(
        message, field=prefix, location=source.locate((*prefix, *path)) or source.locate(prefix), file=source.root_file
    )


def _load_base(f: SearchFile, here: Path, source: SourceMap) -> ModelSpec:
    try:
        spec = load_spec(_base_mapping(f, here, source))
        resolve(spec)
    except SpecError as exc:
        raise _located(exc, source, ("fixed",) if f.fixed else ("base",), "the base spec is invalid") from None
    return spec


def _check_choices(search: Search) -> None:
    """Each choice alone, on the base, must make a valid network (a located error otherwise)."""
    for d in search.dims:
        for i, value in enumerate(d.choices):
            try:
                resolve(search.spec_at({d.name: value}))
            except SpecError as exc:
                at = (*d.at, i) if search.source.locate((*d.at, i)) != search.source.locate(d.at) else d.at
                raise _located(exc, search.source, at, f"{d.name} = {value!r} makes an invalid spec") from None


def _check_reach(search: Search) -> None:
    """Some training resolution of the space must reach where accuracy is judged."""
    p = search.file.proxy
    dim = next((d for d in search.dims if d.name == "resolution"), None)
    trained = [resolve(search.spec_at({dim.name: v})) for v in dim.choices] if dim else [resolve(search.base)]
    if not any(judged_resolutions(p, res) for res in trained):
        field = "best_up_to" if p.resolution == "best" else "resolution"
        pixels = ", ".join(str(res.resolution.train) for res in trained)
        why = unreachable(p, trained[0])
        raise search.source.error(("proxy", field), f"no candidate can be judged there: trained at {pixels} px ({why})")


def _check_sections(f: SearchFile, source: SourceMap) -> None:
    for name in f.constraints:
        if name not in METRICS:
            hint = did_you_mean(name, metric_names())
            raise source.error(
                ("constraints", name),
                f"unknown metric {name!r}{hint}; metrics are {', '.join(metric_names())}",
                key=True,
            )
    named = [o.metric for o in f.objectives]
    for i, metric in enumerate(named):
        if metric in named[:i]:
            raise source.error(("objectives", i, "metric"), f"{metric} is already an objective")
    if f.match is not None and f.space.expansion_ratio != "match":
        raise source.error(("match",), "match: applies only with `expansion_ratio: match` in the space", key=True)
    if f.match is not None and f.match.min > f.match.max:
        raise source.error(("match", "min"), f"min ({f.match.min:g}) is larger than max ({f.match.max:g})")


def _proxy_recipe(f: SearchFile, here: Path, source: SourceMap, dataset: Optional[Path]) -> Optional[str]:
    """The recipe the proxy trains with, as YAML: the file's (or the paper's), with the proxy's batch
    size, an epoch count that makes its schedule end at `steps`, and the synthetic set's sizes."""
    from ..runner.recipe import load_recipe, recipe_yaml  # pure: pydantic and YAML only

    p = f.proxy
    path = None
    if p.recipe is not None:
        path = (here / p.recipe).resolve()
        if not path.is_file():
            raise source.error(("proxy", "recipe"), f"no recipe file {p.recipe!r} (looked for {path})")
    first = load_recipe(path)
    # the schedule is compressed by epochs, so count the images the proxy really trains on
    count = images(dataset) if dataset is not None else p.train_images or first.synthetic.train_size
    epochs = p.steps * p.batch_size / count
    shrink = epochs / first.epochs  # the recipe's schedule, compressed to the proxy's length
    overrides: dict[str, Any] = {
        "global_batch_size": p.batch_size,
        "epochs": epochs,
        "schedule.warmup_epochs": first.schedule.warmup_epochs * shrink,
        "schedule.decay_every_epochs": first.schedule.decay_every_epochs * shrink,
        "ema_decay_per_epoch": first.ema_decay_per_epoch ** (1 / shrink),
        "synthetic.train_size": count,
        "synthetic.val_size": p.val_images,
    }
    try:
        return recipe_yaml(load_recipe(path, overrides))
    except SpecError as exc:
        raise source.error(("proxy",), f"the proxy's recipe is invalid: {exc.line()}") from None


def images(dataset: Path, split: str = "train") -> int:
    """Images of one split of an image-folder tree (split/<class>/<image>)."""
    return max(1, sum(1 for f in (dataset / split).glob("*/*") if f.is_file()))


def _dataset(f: SearchFile, here: Path, source: SourceMap) -> Optional[Path]:
    if f.proxy.dataset == "synthetic":
        return None
    path = (here / f.proxy.dataset).resolve()
    if not (path / "train").is_dir() or not (path / "val").is_dir():
        raise source.error(
            ("proxy", "dataset"), f"'synthetic' or a directory with train/ and val/ folders; {path} is neither"
        )
    return path


def load_search(path: Union[str, Path]) -> Search:
    """Load and check a search file; a located SpecError (file:line:col: field: message) if it is bad."""
    path = Path(path)
    doc = read_yaml(path, SEARCH)
    source = SourceMap(doc.file, doc.value_at, doc.key_at, (doc.file,))
    data = dict(doc.data)
    data.setdefault("name", re.sub(r"[^A-Za-z0-9_.+-]", "_", path.stem)[:80].lstrip("_.+-") or "search")
    f = validate(SearchFile, data, source)
    _check_sections(f, source)
    here = path.resolve().parent
    base = _load_base(f, here, source)
    dims = dimensions(f.space, len(base.stages), source)
    if not dims and f.space.expansion_ratio != "match":
        raise source.error(("space",), "the space has no dimension to search")
    kinds = {METRICS[m].kind for m in [o.metric for o in f.objectives] + list(f.constraints)}
    needs_data = any(k in kinds for k in NEEDS_DATA)
    dataset = _dataset(f, here, source) if needs_data else None
    recipe = _proxy_recipe(f, here, source, dataset) if needs_data else None
    search = Search(f, source, path, base, dims, recipe, dataset)
    if search.size > MAX_POINTS:
        raise source.error(("space",), f"the space has {search.size:,} points; at most {MAX_POINTS:,}")
    _check_choices(search)
    if "accuracy" in kinds:
        _check_reach(search)
    return search


def search_json_schema() -> dict[str, Any]:
    """JSON Schema of the search file, for editor completion."""
    schema = SearchFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archspec search file"
    return schema

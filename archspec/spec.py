"""The spec language: its pydantic schema, and loading YAML (with `base:` inheritance) into it.

`load_spec` is the only way in. Every error it raises is a `SpecError` that names the file, the
line and column, and the field path, e.g.
`specs/x.yaml:4:13: stages[2].stride: must be 1 or 2, got 3`.

Spec loading reads only spec files. A spec named directly (a path given to `load_spec`, a SPEC
argument, or the `base:` of a mapping given to `load_spec`) is read wherever it is; every `base:`
written in a spec file is a .yaml/.yml file that must lie, once its symbolic links are resolved,
under one of the allowed roots: the top spec file's own directory tree, the directories of
ARCHSPEC_SPEC_ROOTS (`--spec-root DIR` adds to it), and those given as `load_spec(roots=...)`.
Presets are always allowed. A shared spec can thus never read, or quote in an error, a file that
is not a spec of the same tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, Field, PrivateAttr, field_validator

from . import blocks, norms
from .errors import FieldPath, Location, SpecError
from .limits import (
    MAX_EXPANSION,
    MAX_GROUP_SIZE,
    MAX_RESOLUTION,
    MIN_EXPANSION,
    MIN_RESOLUTION,
    checked_path,
    path_problem,
)
from .presets import PRESET_NAMES, preset
from .reader import SPEC, check_directory, read_yaml
from .validation import SourceMap, Strict, did_you_mean, validate
from .yaml_source import Document, dump_yaml


def _registered(names: Callable[[], Iterable[str]]) -> AfterValidator:
    """A name from a registry (norms, blocks: plug-ins included), with a did-you-mean from it."""

    def check(value: str) -> str:
        options = list(names())
        if value not in options:
            quoted = [repr(o) for o in options]
            listed = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
            raise ValueError(f"must be {listed}, got {value!r}{did_you_mean(value, options)}")
        return value

    return AfterValidator(check)


NormType = Annotated[str, _registered(norms.spec_types)]  # a norm kind, or `{kind}+pn` where PN may follow
BlockKindName = Annotated[str, _registered(lambda: blocks.registry())]
ActivationName = Literal["silu", "relu", "gelu"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$"
MAX_BASE_CHAIN = 16
SPEC_ROOTS_VARIABLE = "ARCHSPEC_SPEC_ROOTS"  # directories, separated by os.pathsep
SPEC_SUFFIXES = (".yaml", ".yml")


def _odd_kernel(value: int) -> int:
    if value % 2 == 0:
        raise ValueError(f"must be odd (1, 3, 5, ...) so that 'same' padding is symmetric, got {value}")
    return value


class StemSpec(Strict):
    channels: int = Field(32, ge=1, le=4096, description="Output channels before width scaling.")
    kernel: int = Field(3, ge=1, le=15, description="Odd kernel size.")
    stride: Literal[1, 2] = 2

    _odd = field_validator("kernel")(_odd_kernel)


class StageSpec(Strict):
    block: BlockKindName = Field(
        "mbconv",
        description="A registered block: mbconv (expansion 1 drops the expansion conv), fused_mbconv (V2).",
    )
    repeats: int = Field(1, ge=1, le=64, description="Blocks in the stage before depth scaling.")
    kernel: int = Field(3, ge=1, le=15, description="Odd kernel size of the spatial (grouped) conv.")
    stride: Literal[1, 2] = Field(1, description="Stride of the stage's first block.")
    expansion: float = Field(
        6.0, ge=MIN_EXPANSION, le=MAX_EXPANSION, description="Mid channels = input channels x expansion."
    )
    channels: int = Field(ge=1, le=8192, description="Output channels before width scaling.")
    se_ratio: float = Field(0.25, ge=0, le=1, description="Squeeze-excite channels = input x ratio; 0 = no SE.")
    group_size: Optional[int] = Field(None, ge=1, le=MAX_GROUP_SIZE, description="Overrides the global group_size.")

    _odd = field_validator("kernel")(_odd_kernel)


class HeadSpec(Strict):
    channels: int = Field(1280, ge=0, le=16384, description="Head conv channels before width scaling; 0 = none.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before the classifier.")


class NormSpec(Strict):
    type: NormType = Field(
        "bn", description="A registered norm: bn | gn | ln | frn, or gn+pn | ln+pn (pn = proxy-normalized activations)."
    )
    groups: int = Field(4, ge=1, le=1024, description="Groups of GN (gn, gn+pn).")
    eps: float = Field(1e-3, gt=0, le=1)
    pn_eps: float = Field(3e-2, gt=0, le=1, description="Numerical constant of proxy normalization.")
    momentum: float = Field(0.01, gt=0, lt=1, description="BN running-statistics momentum (PyTorch convention).")


TrainResolution = Union[Literal["native", "half"], int]


class ResolutionSpec(Strict):
    native: Optional[int] = Field(
        None, ge=MIN_RESOLUTION, le=MAX_RESOLUTION, description="The model's native resolution (Table 1)."
    )
    half: Optional[int] = Field(
        None, ge=MIN_RESOLUTION, le=MAX_RESOLUTION, description="Half resolution; derived when absent."
    )
    train: TrainResolution = Field("native", description="native | half | a pixel count.")
    test: list[int] = Field(default_factory=list, max_length=64, description="Test resolutions.")

    @field_validator("train", mode="before")
    @classmethod
    def _train(cls, value: Any) -> Any:
        if value in ("native", "half"):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and MIN_RESOLUTION <= value <= MAX_RESOLUTION:
            return value
        raise ValueError(
            f"must be 'native', 'half' or an integer from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {value!r}"
        )

    @field_validator("test")
    @classmethod
    def _test(cls, value: list[int]) -> list[int]:
        for r in value:
            if not MIN_RESOLUTION <= r <= MAX_RESOLUTION:
                raise ValueError(f"test resolutions must be from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {r}")
        return value


class ModelSpec(Strict):
    """A network, as written. `resolve()` turns it into concrete layers."""

    name: str = Field("model", pattern=NAME_PATTERN, description="Letters, digits, _ . + - (max 80).")
    description: Optional[str] = Field(None, max_length=2000)
    base: Optional[str] = Field(None, description="A preset (efficientnet-b0 ... b7) or a path to a spec.")
    width_multiplier: float = Field(1.0, ge=0.05, le=10)
    depth_multiplier: float = Field(1.0, ge=0.05, le=10)
    channel_divisor: int = Field(8, ge=1, le=256)
    stem: StemSpec = Field(default_factory=StemSpec)
    stages: list[StageSpec] = Field(min_length=1, max_length=32)
    head: HeadSpec = Field(default_factory=HeadSpec)
    group_size: int = Field(1, ge=1, le=MAX_GROUP_SIZE, description="Group size of every spatial conv; 1 = depthwise.")
    expansion_ratio: Optional[float] = Field(
        None,
        ge=MIN_EXPANSION,
        le=MAX_EXPANSION,
        description="Global expansion ratio; stages whose expansion is 1 keep 1.",
    )
    mid_channel_rounding: Literal["divisor", "group"] = Field(
        "divisor",
        description="Expanded channels (input x expansion) are rounded to channel_divisor, or with "
        "'group' to a multiple of the group size as well, so that no grouped conv needs "
        "its group size rounded.",
    )
    group_rounding: Literal["size", "count"] = Field(
        "size",
        description="When the group size does not divide a layer's channels C (paper footnote 2): 'size' "
        "uses the divisor of C nearest G; 'count' rounds the number of groups to the divisor "
        "of C nearest C/G, the reading that reproduces every P of the paper's Table 2.",
    )
    norm: NormSpec = Field(default_factory=NormSpec)
    activation: ActivationName = "silu"
    drop_path: float = Field(
        0.0, ge=0, lt=1, description="Stochastic-depth rate, scaled linearly from 0 at the first block (as timm)."
    )
    resolution: ResolutionSpec = Field(default_factory=ResolutionSpec)
    num_classes: int = Field(1000, ge=1, le=100_000)
    in_channels: int = Field(3, ge=1, le=64)

    _source: Optional[SourceMap] = PrivateAttr(default=None)

    @property
    def source(self) -> SourceMap:
        return self._source if self._source is not None else SourceMap(root_file="<dict>")


# --------------------------------------------------------------------------------------------
# loading


def _merge(base: dict[str, Any], child: dict[str, Any], path: FieldPath, replaced: list[FieldPath]) -> dict[str, Any]:
    """Deep-merge `child` over `base`: mappings merge key by key, anything else is replaced.

    One exception: a half resolution belongs to its native one, so a child that sets
    `resolution.native` without `resolution.half` does not inherit the base's half.
    """
    if path == ("resolution",) and "native" in child and "half" not in child:
        base = {k: v for k, v in base.items() if k != "half"}
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, (*path, key), replaced)
        else:
            out[key] = value
            replaced.append((*path, key))
    return out


def _under(path: FieldPath, prefixes: list[FieldPath]) -> bool:
    return any(path[: len(p)] == p for p in prefixes)


def _merge_sources(base: SourceMap, child: Document, replaced: list[FieldPath]) -> SourceMap:
    def keep(table: dict[FieldPath, Location]) -> dict[FieldPath, Location]:
        return {p: loc for p, loc in table.items() if not _under(p, replaced)}

    return SourceMap(
        root_file=child.file,
        value_at={**keep(base.value_at), **child.value_at},
        key_at={**keep(base.key_at), **child.key_at},
        chain=(child.file, *base.chain),
    )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def _expand_shorthands(doc: Document) -> Document:
    """`norm: ln` means `norm: {type: ln}` and `resolution: half` (or 160) `resolution: {train: half}`,
    expanded before merging so that the rest of a base's mapping is kept."""
    data = dict(doc.data)
    for key, inner in (("norm", "type"), ("resolution", "train")):
        value = data.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            data[key] = {inner: value}
            if (key,) in doc.value_at:
                doc.value_at[(key, inner)] = doc.value_at[(key,)]
    return Document(data, doc.file, doc.value_at, doc.key_at)


def spec_roots(extra: Iterable[str | os.PathLike[str]] = ()) -> tuple[Path, ...]:
    """The directories (resolved) of ARCHSPEC_SPEC_ROOTS and `extra`, whose trees `base:` may read
    besides the top spec's own. Entries that are not usable paths are left out."""
    named = [*os.environ.get(SPEC_ROOTS_VARIABLE, "").split(os.pathsep), *(os.fspath(e) for e in extra)]
    out = []
    for entry in filter(None, named):
        try:
            out.append(checked_path(entry).resolve())
        except SpecError:
            continue
    return tuple(out)


@contextmanager
def more_spec_roots(directories: Iterable[str | os.PathLike[str]], parameter: str = "spec_root") -> Iterator[None]:
    """ARCHSPEC_SPEC_ROOTS with `directories` added, for the `with` block: in the environment, so
    that the processes this one starts (a training run's workers) read specs by the same rule."""
    added = []
    for d in directories:
        path = check_directory(d, parameter=parameter, what="spec root")
        added.append(str(path.resolve()))
    before = os.environ.get(SPEC_ROOTS_VARIABLE)
    if added:
        os.environ[SPEC_ROOTS_VARIABLE] = os.pathsep.join([*filter(None, [before]), *added])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SPEC_ROOTS_VARIABLE, None)
        else:
            os.environ[SPEC_ROOTS_VARIABLE] = before


def _under_roots(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def base_file(name: str, here: Path, roots: tuple[Path, ...] | None, at: dict[str, Any]) -> Path:
    """The file `base: name` (written in a spec in `here`) names, resolved, if it may be read: a
    .yaml file under the roots (`roots` None: a base named by the caller, read wherever it is)."""
    if not name.lower().endswith(SPEC_SUFFIXES):
        raise SpecError(f"a base spec is a preset or a .yaml file, got {name[:60]!r}", **at)
    path = checked_path(here / name, **at).resolve()
    if roots is not None and not (_under_roots(path, roots) and path.name.lower().endswith(SPEC_SUFFIXES)):
        shown = ", ".join(str(r) for r in roots[:3]) + (", ..." if len(roots) > 3 else "")
        raise SpecError(
            f"base spec {name[:80]!r} lies outside the directories specs may be read from ({shown}); "
            f"to allow it, name its directory with --spec-root DIR or in {SPEC_ROOTS_VARIABLE}",
            **at,
        )
    return path


def _load_chain(
    doc: Document, here: Path, chain: tuple[Path, ...], roots: tuple[Path, ...] | None, extra: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], SourceMap]:
    """Resolve `doc`'s base chain; returns the merged mapping and its source map. `roots`: where
    its `base:` may lie (None: anywhere, for a mapping given by the caller, whose base file's
    directory with `extra` then becomes the roots)."""
    doc = _expand_shorthands(doc)
    base_name = doc.data.get("base")
    if base_name is None:
        return doc.data, SourceMap(doc.file, dict(doc.value_at), dict(doc.key_at), (doc.file,))
    where = doc.value_at.get(("base",))
    at: dict[str, Any] = {"field": "base", "location": where, "file": doc.file}
    if not isinstance(base_name, str) or not base_name:
        raise SpecError(f"must be a preset name or a path to a spec, got {base_name!r}", **at)
    replaced: list[FieldPath] = []
    if base_name in PRESET_NAMES:
        base_data = {k: v for k, v in preset(base_name).items() if k != "name"}  # never inherit a name
        merged = _merge(base_data, doc.data, (), replaced)
        return merged, _merge_sources(SourceMap(base_name, chain=(base_name,)), doc, replaced)
    if not _looks_like_path(base_name):
        raise SpecError(
            f"unknown preset {base_name!r}{did_you_mean(base_name, list(PRESET_NAMES))}; "
            f"presets are {', '.join(PRESET_NAMES)}, or give a path ending in .yaml",
            **at,
        )
    base_path = base_file(base_name, here, roots, at)
    if base_path in chain:
        cycle = " -> ".join(_display(p) for p in (*chain, base_path))
        raise SpecError(f"cyclic base: {cycle}", **at)
    if len(chain) >= MAX_BASE_CHAIN:
        raise SpecError(f"more than {MAX_BASE_CHAIN} levels of base specs", **at)
    if not base_path.is_file():
        what = "is not a regular file" if base_path.exists() else "not found"
        raise SpecError(f"base spec {base_name!r} {what} (looked for {_display(base_path)})", **at)
    base_doc = read_yaml(base_path, SPEC, shown_as=_display(base_path))
    roots = roots if roots is not None else (base_path.parent, *extra)
    base_data, base_source = _load_chain(base_doc, base_path.parent, (*chain, base_path), roots)
    base_data = dict(base_data)
    base_data.pop("name", None)  # a derived spec never silently carries its parent's name
    merged = _merge(base_data, doc.data, (), replaced)
    return merged, _merge_sources(base_source, doc, replaced)


def _validated(data: dict[str, Any], source: SourceMap) -> ModelSpec:
    spec = validate(ModelSpec, data, source)
    spec._source = source
    return spec


def _default_name(file: Path) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]", "_", file.stem)[:80].lstrip("_.+-")
    return cleaned or "model"


def load_spec(
    source: Union[str, Path, Mapping[str, Any], ModelSpec], *, roots: Iterable[str | os.PathLike[str]] = ()
) -> ModelSpec:
    """Load a spec from a YAML path, a preset name, a mapping, or pass a ModelSpec through.

    `roots`: directories whose spec files a `base:` may name, besides the top spec's own tree and
    ARCHSPEC_SPEC_ROOTS. Raises `SpecError` (one line: file:line:col: field: message) for any bad
    input.
    """
    if isinstance(source, ModelSpec):
        return source
    extra = spec_roots(roots)
    if isinstance(source, Mapping):
        doc = Document(dict(source), "<dict>")
        data, sources = _load_chain(doc, Path.cwd(), (), None, extra)
        return _validated(data, sources)
    shown = str(source)
    exists = path_problem(source) is None and Path(source).exists()
    if isinstance(source, str) and source in PRESET_NAMES and not exists:
        return _validated(preset(source), SourceMap(root_file=source, chain=(source,)))
    if isinstance(source, str) and not exists and not _looks_like_path(source):
        raise SpecError(
            f"unknown preset {source!r}{did_you_mean(source, list(PRESET_NAMES))} and no such file; "
            f"presets are {', '.join(PRESET_NAMES)}",
            file=shown,
        )
    path = checked_path(source, file=shown)
    doc = read_yaml(path, SPEC, shown_as=shown)
    top = path.resolve()
    data, sources = _load_chain(doc, top.parent, (top,), (top.parent, *extra))
    if "name" not in doc.data:
        data = {**data, "name": _default_name(path)}
    return _validated(data, sources)


def spec_yaml(spec: ModelSpec, header: str = "") -> str:
    """The spec as a standalone YAML file: every field that applies written out, no `base:`."""
    data = spec.model_dump(mode="json", exclude_none=True, exclude={"base"})
    data["norm"] = {k: v for k, v in data["norm"].items() if k in norms.fields(spec.norm.type)}
    return header + dump_yaml(data)


def derived_spec_yaml(spec: ModelSpec, changes: dict[str, Any], path: Path, header: str = "") -> str:
    """The smallest spec file at `path` that means `spec` with `changes`: the spec's own file (or
    `base: preset`) with the changes on top, its `base:` path rewritten to hold from `path`. A spec
    that came from no file is written out in full."""
    source = spec.source.root_file
    if source in PRESET_NAMES:
        data: dict[str, Any] = {"base": source}
    elif Path(source).is_file():
        data = read_yaml(source, SPEC).data
        base = data.get("base")
        if isinstance(base, str) and base not in PRESET_NAMES:
            target = (Path(source).resolve().parent / base).resolve()
            data["base"] = Path(os.path.relpath(target, path.resolve().parent)).as_posix()
    else:
        return spec_yaml(spec.model_copy(update=changes), header)
    return header + dump_yaml({**data, **changes})


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec language, for editor completion."""
    schema = ModelSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archspec model spec"
    # a derived spec may leave out `stages` (it inherits them from `base`)
    schema["required"] = []
    return schema

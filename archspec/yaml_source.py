"""Safe YAML parsing that remembers where every value came from, and the one YAML writer. Files
are read by archspec.reader, which hands their text here.

PyYAML composes the document into a node tree (no Python objects are built); we then turn the
nodes into plain dicts, lists and scalars ourselves, accepting only the core scalar tags. That
gives us, for free: no tag can construct a Python object, duplicate keys are caught with their
position, the document's size and alias expansion are bounded while it is read (a megabyte flow
list, alias bombs), and every field path maps to a line/column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from .errors import FieldPath, Location, SpecError
from .limits import MAX_DEPTH, MAX_EXPANDED_NODES, MAX_YAML_NODES

_SCALARS = {
    "tag:yaml.org,2002:null": SafeConstructor.construct_yaml_null,
    "tag:yaml.org,2002:bool": SafeConstructor.construct_yaml_bool,
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
    "tag:yaml.org,2002:str": SafeConstructor.construct_yaml_str,
}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


@dataclass
class Document:
    """A YAML mapping plus the location of each value (and of each key) by field path."""

    data: dict[str, Any]
    file: str
    value_at: dict[FieldPath, Location] = field(default_factory=dict)
    key_at: dict[FieldPath, Location] = field(default_factory=dict)


def _location(file: str, node: yaml.Node) -> Location:
    mark = node.start_mark
    return Location(file, mark.line + 1, mark.column + 1)


def _excerpt(text: str) -> str:
    """A value of the file as an error quotes it: short (the file may be anything)."""
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:36] + "...'"


class _TooManyNodes(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _TooDeep(_TooManyNodes):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's composer, counting nodes as it builds them: a document with more than
    MAX_YAML_NODES stops there, before the rest of it is even scanned, and one nested more than
    MAX_DEPTH levels at the level past it (PyYAML's scanner slows quadratically with the depth
    of flow collections, and its composer recurses)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.nodes = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES or self.depth > MAX_DEPTH:
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]
            raise (_TooManyNodes if self.nodes > MAX_YAML_NODES else _TooDeep)(event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        """The scanner, which reads up to 1,024 characters ahead for a key, stops here too."""
        if self.flow_level >= MAX_DEPTH + 1:
            raise _TooDeep(self.get_mark())
        super().fetch_flow_collection_start(token_class)


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.expanded = 0
        self.value_at: dict[FieldPath, Location] = {}
        self.key_at: dict[FieldPath, Location] = {}
        self._constructor = SafeConstructor()

    def fail(self, node: yaml.Node, path: FieldPath, message: str) -> SpecError:
        return SpecError(message, field=path or None, location=_location(self.file, node))

    def convert(self, node: yaml.Node, path: FieldPath, active: frozenset[int]) -> Any:
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_NODES:
            raise self.fail(
                node, path, f"document expands to more than {MAX_EXPANDED_NODES} values (aliases nested too deep?)"
            )
        if len(path) > MAX_DEPTH:
            raise self.fail(node, path, f"nesting deeper than {MAX_DEPTH} levels")
        if id(node) in active:
            raise self.fail(node, path, "recursive alias")
        self.value_at.setdefault(path, _location(self.file, node))
        if isinstance(node, yaml.ScalarNode):
            construct = _SCALARS.get(node.tag)
            if construct is None:
                raise self.fail(
                    node,
                    path,
                    f"unsupported YAML tag {node.tag!r}: only plain strings, numbers, booleans and null are allowed",
                )
            try:
                return construct(self._constructor, node)
            except (ValueError, yaml.YAMLError) as exc:
                raise self.fail(node, path, f"bad scalar {_excerpt(node.value)}: {str(exc)[:120]}") from None
        active = active | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self.fail(node, path, f"unsupported YAML tag {node.tag!r} on a list")
            return [self.convert(item, (*path, i), active) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise self.fail(node, path, f"unsupported YAML tag {node.tag!r} on a mapping")
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(
                        key_node,
                        path,
                        "YAML merge keys ('<<') are not supported; use 'base:' to inherit from another spec",
                    )
                if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
                    raise self.fail(key_node, path, f"keys must be plain strings, got {_excerpt(str(key_node.value))}")
                key = key_node.value
                here = (*path, key)
                if key in out:
                    first = self.key_at[here]
                    raise self.fail(key_node, here, f"duplicate key (first defined at line {first.line})")
                self.key_at[here] = _location(self.file, key_node)
                out[key] = self.convert(value_node, here, active)
            return out
        raise self.fail(node, path, f"unsupported YAML node {type(node).__name__}")


def parse_yaml(text: str, file: str) -> Document:
    """Parse one YAML document whose top level is a mapping."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # which reads the text's characters already
        documents: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                documents.append(node)
    except _TooDeep as exc:
        at = Location(file, exc.mark.line + 1, exc.mark.column + 1)
        raise SpecError(f"YAML nesting is too deep (more than {MAX_DEPTH} levels)", location=at) from None
    except _TooManyNodes as exc:
        at = Location(file, exc.mark.line + 1, exc.mark.column + 1)
        raise SpecError(f"more than {MAX_YAML_NODES} values: too large for a spec", location=at) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", location=where, file=file) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {next(iter(str(exc).splitlines()), 'invalid YAML')}", file=file) from None
    except RecursionError:
        raise SpecError(f"YAML nesting is too deep (more than {MAX_DEPTH} levels)", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not documents:
        raise SpecError("the file is empty: a spec is a YAML mapping (name, base, stages, ...)", file=file)
    if len(documents) > 1:
        raise SpecError(
            f"expected one YAML document, found {len(documents)} (remove the '---' separators)",
            location=_location(file, documents[1]),
        )
    root = documents[0]
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else f"the scalar {_excerpt(str(root.value))}"
        raise SpecError(f"the top level must be a mapping of spec fields, got {kind}", location=_location(file, root))
    converter = _Converter(file)
    try:
        data = converter.convert(root, (), frozenset())
    except RecursionError:
        raise SpecError(f"YAML nesting is too deep (more than {MAX_DEPTH} levels)", file=file) from None
    return Document(data, file, converter.value_at, converter.key_at)


def dump_yaml(data: dict[str, Any]) -> str:
    """A spec, recipe or resolved network as YAML, keys in the given order. Every file archspec
    writes as YAML goes through here."""
    # through JSON: tuples become lists and anything not plain fails loudly, so safe_dump can write it
    return yaml.safe_dump(_without_float_noise(json.loads(json.dumps(data))), sort_keys=False)


def _without_float_noise(value: Any) -> Any:
    """0.15000000000000002 -> 0.15: twelve significant digits say every number a spec can mean."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, list):
        return [_without_float_noise(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_float_noise(v) for k, v in value.items()}
    return value

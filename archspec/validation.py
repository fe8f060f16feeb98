"""Validation shared by every YAML document archspec reads (specs, recipes): strict pydantic
models, and their errors turned into one located line each."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from .errors import FieldPath, Location, SpecError, format_path
from .limits import MAX_ERRORS_LISTED

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    # strict: no silent coercion ("3" is not 3, true is not 1); unknown keys are errors
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=True)


@dataclass
class SourceMap:
    """Where each field of a loaded spec was written (across its chain of bases)."""

    root_file: str
    value_at: dict[FieldPath, Location] = field(default_factory=dict)
    key_at: dict[FieldPath, Location] = field(default_factory=dict)
    chain: tuple[str, ...] = ()  # this file, then its bases, ending with a preset if any

    def locate(self, path: FieldPath, *, key: bool = False) -> Location | None:
        table = self.key_at if key else self.value_at
        if key and path in table:
            return table[path]
        for n in range(len(path), -1, -1):
            if path[:n] in self.value_at:
                return self.value_at[path[:n]]
        return None

    def error(self, path: FieldPath, message: str, *, key: bool = False) -> SpecError:
        return SpecError(message, field=path, location=self.locate(path, key=key), file=self.root_file)


def did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "literal_error": None,
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _humanize(err: ErrorDetails, model_fields: list[str] | None) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f"got {_short(value)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        hint = did_you_mean(key, model_fields or [])
        allowed = f"; allowed: {', '.join(model_fields)}" if model_fields and not hint else ""
        return f"unknown key{hint}{allowed}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, {got}"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, {got} ({type(value).__name__})"
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {ctx[key]}, {got}"
    if kind == "finite_number":
        return f"must be a finite number, {got}"
    if kind in ("too_long", "too_short"):
        word = "at most" if kind == "too_long" else "at least"
        limit = ctx.get("max_length", ctx.get("min_length"))
        return f"must have {word} {limit} items, got {ctx.get('actual_length')}"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters"
    if kind == "string_pattern_mismatch":
        return f"must be letters, digits, '_', '.', '+' or '-' (max 80, starting with a letter or digit), {got}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg']}, {got}"


def _fields_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """Field names allowed at the mapping that `loc` (ending in an unknown key) belongs to."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return None
        annotation = info.annotation
        args = getattr(annotation, "__args__", ()) or ()
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return list(model.model_fields)


def validate(model: type[M], data: dict[str, Any], source: SourceMap) -> M:
    """`model.model_validate(data)`, with the first error (in file order) as one located line."""
    try:
        instance = model.model_validate(data)
    except ValidationError as exc:
        found = []
        for err in exc.errors(include_url=False):
            # drop pydantic's union-branch markers such as 'literal[...]' or 'int' from the path
            loc = tuple(p for p in err["loc"] if isinstance(p, int) or not re.match(r"^(literal\[|int$|float$)", p))
            is_key = err["type"] == "extra_forbidden"
            found.append((source.locate(loc, key=is_key), loc, err, is_key))
        found.sort(
            key=lambda e: (
                e[0] is None,
                e[0].file != source.root_file if e[0] else 0,
                (e[0].line, e[0].column) if e[0] else (0, 0),
            )
        )
        # only the errors that are shown are worded (tens of thousands of unknown keys stay fast)
        every = [
            SpecError(
                _humanize(err, _fields_at(model, loc) if is_key else None),
                field=format_path(loc),
                location=at,
                file=source.root_file,
            )
            for at, loc, err, is_key in found[:MAX_ERRORS_LISTED]
        ]
        if len(found) > MAX_ERRORS_LISTED:
            every.append(SpecError(f"{len(found) - MAX_ERRORS_LISTED} more errors not listed", file=source.root_file))
        first = every[0]
        if len(found) > 1:
            more = f"{len(found) - 1} more error{'s' if len(found) > 2 else ''}"
            first = SpecError(
                f"{first.message} (+{more}: `archspec validate --all-errors` lists them)",
                field=first.field,
                location=first.location,
                file=source.root_file,
            )
        first.every = tuple(every)
        raise first from None
    return instance

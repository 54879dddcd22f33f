"""One wording of a validation error for job templates and data schemas alike: `key:
message`, each error naming where it sits in the YAML file; an unknown key names the
closest key the model has there."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or '' when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
        elif item not in ("function-after", "function-before") and "[" not in str(item):
            text += ("." if text else "") + str(item)
    return text


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or inside Optional, Union, list or Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            if (found := _model_in(arg)) is not None:
                return found
    return None


def keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a YAML mapping may hold at `loc` (the location of the mapping, not of the key)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if not isinstance(part, str):
            continue  # a list index: the list's items are the same model
        fields = current.model_fields
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return [field.alias or name for name, field in current.model_fields.items()] if current else []


def validation_message(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every error as `key: message`; with the `model` validated, an unknown key names the
    closest valid key at its place, or the valid keys when none is close."""
    return "; ".join(validation_messages(exc, model))


def validation_messages(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """validation_message's errors one by one (a message may hold "; " itself)."""
    parts = []
    for err in exc.errors():
        loc = _location(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            known = keys_at(model, err["loc"][:-1]) if model is not None else []
            if known:
                hint = did_you_mean(str(err["loc"][-1]), known)
                msg += hint or f" (the keys here are: {', '.join(known)})"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return parts


class LoadError(str):
    """A file left out of the model or the catalog: its one sentence (naming the file, the
    key and the reason), the file, and what the file meant to define when it says so (a
    table or template name), for the console to show it where the user looks for it."""

    origin: str
    subject: str | None

    def __new__(cls, message: str, origin: str, subject: str | None = None) -> LoadError:
        error = super().__new__(cls, message)
        error.origin, error.subject = origin, subject
        return error

    def __reduce__(self) -> tuple[Any, ...]:
        return (LoadError, (str(self), self.origin, self.subject))

"""What import and export templates share: the strict base model, field checks,
schedules, collectors, partitions, launch overrides, and filters."""

from __future__ import annotations

import codecs
import re
import datetime as dt
import string
from pathlib import PurePosixPath
from typing import Annotated, Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

import schemas
# One wording of a pydantic error for templates and data schemas alike: `key: message`.
from schemas.messages import validation_message as format_validation_error
from schemas.messages import validation_messages
from campaign_pipelines.errors import TemplateError

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class Model(BaseModel):
    # Unknown keys are errors: a typo must not be silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def data_model(info: ValidationInfo) -> schemas.DataModel:
    """The data model a template is validated against: its validation context's."""
    model = (info.context or {}).get("model")
    if not isinstance(model, schemas.DataModel):
        raise TypeError("a job template is validated against a data model: model_validate(data, context={'model': model})")
    return model


def _one_character(value: str | None, key: str) -> str | None:
    if value is None:
        return None
    if value == "\\t":
        return "\t"
    if len(value) != 1:
        raise ValueError(f"{key} must be one character, got {value!r}")
    return value


def _delimiter(value: str) -> str:
    value = _one_character(value, "delimiter")
    if value in ("\n", "\r"):
        raise ValueError("delimiter cannot be a line break")
    return value


def _encoding(value: str) -> str:
    try:
        return codecs.lookup(value).name
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None


class NumberFormat(Model):
    decimal: str = "."
    thousands: str | None = None


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}; use an IANA name such as Europe/Paris") from None
    return value


def _inside_data_dir(value: str) -> str:
    """A folder or glob relative to CAMPAIGN_DATA_DIR; checked again when resolved."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r} must be a relative path under CAMPAIGN_DATA_DIR (no '..', not absolute)")
    return value


def check_pattern(key: str, pattern: str, **fields: Any) -> None:
    """A path pattern may fill in only `fields` (such as {date:%Y%m%d})."""
    try:
        pattern.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        names = " and ".join("{date:…}" if name == "date" else f"{{{name}}}" for name in fields)
        raise ValueError(f"{key}: only {names} can be filled in ({exc})") from None


def has_date_field(pattern: str) -> bool:
    return any(name == "date" for _, name, _, _ in string.Formatter().parse(pattern) if name is not None)


class Schedule(Model):
    cron: str
    timezone: str = "UTC"
    default_status: Literal["running", "stopped"] = "stopped"

    _check_timezone = field_validator("timezone")(lambda v: _timezone(v))
    _check_cron = field_validator("cron")(lambda v: _cron(v))


def _cron(v: str) -> str:
    # Dagster's own check (what it accepts, it schedules); imported here because loading
    # dagster costs a second that a template without a schedule need not pay.
    import dagster as dg

    try:
        dg.ScheduleDefinition(name="cron_check", cron_schedule=v, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(f"{v!r} is not a valid cron expression (five fields, such as '0 2 * * *')") from None
    return v


class Expected(Model):
    """Campaign's "process missing file": a file is expected by `by` (HH:MM, in `timezone`)
    on the days `weekdays` (cron's day-of-week field: `*`, `mon-fri`, `1-5`); its absence
    fails the check `file_arrived` and its run (expected.py)."""

    by: str
    timezone: str = "UTC"
    weekdays: str = "*"

    _check_timezone = field_validator("timezone")(lambda v: _timezone(v))

    @field_validator("by")
    @classmethod
    def _time_of_day(cls, v: str) -> str:
        if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", v):
            raise ValueError(f"{v!r} is not a time of day as HH:MM (such as 06:00)")
        return v

    @field_validator("weekdays")
    @classmethod
    def _valid_weekdays(cls, v: str) -> str:
        try:
            _cron(f"0 0 * * {v}")
        except ValueError:
            raise ValueError(f"{v!r} is not a cron day-of-week field (such as *, mon-fri or 1-5)") from None
        return v

    @property
    def cron(self) -> str:
        hour, minute = self.by.split(":")
        return f"{int(minute)} {int(hour)} * * {self.weekdays}"


class Collector(Model):
    watch: str  # a glob under CAMPAIGN_DATA_DIR
    archive: str = "archive"  # imported files go here, with the run id in their name
    error: str = "error"  # files whose run failed go here
    interval_seconds: Annotated[int, Field(ge=1)] = 30
    # A file is complete when `<file><ready_marker>` exists (say `.done`); without a
    # marker, when its size and mtime did not change between two ticks.
    ready_marker: str | None = None
    default_status: Literal["running", "stopped"] = "stopped"
    expected: Expected | None = None  # a file is expected by a time of day

    _check_paths = field_validator("watch", "archive", "error")(lambda v: _inside_data_dir(v))

    _check_marker = field_validator("ready_marker")(lambda v: name_suffix(v, "ready_marker"))


class FromEnv(Model):
    """A secret (an OpenPGP key, a passphrase) named by its environment variable: `{env: NAME}`."""

    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Decrypt(Model):
    """The file is OpenPGP-encrypted: decrypted with this private key before it is read."""

    private_key: FromEnv
    passphrase: FromEnv | None = None


class Encrypt(Model):
    """The file is OpenPGP-encrypted to these public keys (and signed) before delivery."""

    recipients: Annotated[list[FromEnv], Field(min_length=1)]
    sign_key: FromEnv | None = None
    sign_passphrase: FromEnv | None = None


def name_suffix(value: str | None, key: str) -> str | None:
    """A marker file's suffix, added to a file's name (`.done`)."""
    if value is not None and (not value or "/" in value):
        raise ValueError(f"{key} is a suffix added to the file's name, such as .done")
    return value


class DailyPartitions(Model):
    start: dt.date
    end: dt.date | None = None  # exclusive: the last partition is the day before
    timezone: str = "UTC"
    # Imports: the day's file, with {date:...} (default: source.path).
    path: str | None = None
    # Exports: the timestamp column whose day picks the rows (default: source.differential).
    column: str | None = None

    _check_timezone = field_validator("timezone")(lambda v: _timezone(v))

    @model_validator(mode="after")
    def _range(self) -> "DailyPartitions":
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        if self.path is not None and not has_date_field(self.path):
            raise ValueError("path must hold the partition's date, such as inbox/crm/recipients_{date:%Y%m%d}.csv")
        return self


class Partitions(Model):
    daily: DailyPartitions


# Keys where null means something (no limit); elsewhere null means "as the template says".
NULLABLE_LAUNCH_KEYS = ("limit", "max_rejects")


def check_each_part(
    cls: type[BaseModel], data: Any, info: ValidationInfo, kind: str, keys: tuple[str, ...], inherited: tuple[str, ...] = ()
) -> Any:
    """A multiple template's parts, each checked as the one-file template it would be (its
    `keys`, and the template's `inherited` ones it does not set), its errors named
    parts[i].…: the same rules, one place."""
    if not isinstance(data, dict) or not isinstance(data.get("parts"), list):
        return data
    for i, part in enumerate(data["parts"]):
        if not isinstance(part, dict):
            continue  # the field's own validation says what a part is
        single = {"name": data.get("name", kind), "kind": kind, **{k: data[k] for k in inherited if k in data},
                  **{k: part[k] for k in keys if k in part}}
        try:
            cls.model_validate(single, context=info.context)
        except ValidationError as exc:
            raise ValueError("; ".join(f"parts[{i}].{error}" for error in validation_messages(exc, cls))) from None
    return data


class Launchable(Model):
    """A template a launch can override with flat keys."""

    launch_keys: ClassVar[dict[str, tuple[str, str]]] = {}
    # The data model the template was validated against: its tables, for every step.
    _model: schemas.DataModel = PrivateAttr()

    @property
    def model(self) -> schemas.DataModel:
        return self._model

    @classmethod
    def parse(cls, data: Any, model: schemas.DataModel) -> Self:
        return cls.model_validate(data, context={"model": model})

    def with_overrides(self, overrides: dict[str, Any]) -> Self:
        """The template as launched: flat launch keys applied to their template keys."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        for key, value in overrides.items():
            if value is None and key not in NULLABLE_LAUNCH_KEYS:
                continue
            section, name = self.launch_keys[key]
            data.setdefault(section, {})[name] = value
        try:
            return type(self).parse(data, self.model)
        except ValidationError as exc:
            raise TemplateError(f"launch config for {self.name}: {self._launch_errors(exc, overrides)}") from None

    def _launch_errors(self, exc: ValidationError, overrides: dict[str, Any]) -> str:
        """Errors on launched values name the launch key as well as the template key."""
        by_template_key = {".".join(where): key for key, where in self.launch_keys.items() if key in overrides}
        parts = []
        for part in format_validation_error(exc).split("; "):
            location, _, message = part.partition(": ")
            key = by_template_key.get(location)
            parts.append(f"{key}={overrides[key]!r} ({location}): {message}" if key else part)
        return "; ".join(parts)

    def launch_values(self) -> dict[str, Any]:
        """The template's value of every launch key, as the model typed it."""
        return {key: getattr(getattr(self, section), name) for key, (section, name) in self.launch_keys.items()}


FILTER_OPERATORS = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "like", "is_null")


def filter_conditions(condition: Any) -> list[tuple[str, Any]]:
    """`{in: [FR, BE]}` -> [("in", [FR, BE])]; a bare value means eq."""
    if isinstance(condition, dict):
        return list(condition.items())
    return [("eq", condition)]


def check_conditions(f: "schemas.Field", condition: Any, where: str) -> None:
    """Each operator known and each value of `f`'s type; a ValueError names `where`.op."""
    for op, value in filter_conditions(condition):
        if op not in FILTER_OPERATORS:
            raise ValueError(f"{where}.{op}: unknown operator; use one of {', '.join(FILTER_OPERATORS)}")
        try:
            filter_value(f, op, value)
        except ValueError as exc:
            raise ValueError(f"{where}.{op}: {exc}") from None


def filter_value(f: "schemas.Field", op: str, value: Any) -> Any:
    """The bound value of one condition, in the column's type."""
    if op == "is_null":
        if not isinstance(value, bool):
            raise ValueError("is_null takes true or false")
        return value
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"{op} takes a non-empty list")
        return [f.python_value(v) for v in value]
    if op == "like":
        if not isinstance(value, str):
            raise ValueError("like takes a text pattern")
        return value
    if value is None:
        raise ValueError(f"{op} needs a value; use is_null for empty values")
    return f.python_value(value)

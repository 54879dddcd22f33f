"""The deployment's endpoints file (`CAMPAIGN_ENDPOINTS`, default `endpoints.yaml` in the
working directory; docs/endpoints.md): one mapping per endpoint, by name.

    crm_sftp:
      type: sftp
      host: sftp.crm.example.com
      user: campaign
      private_key: {env: CRM_SFTP_KEY}
      known_host_key: "ssh-ed25519 AAAAC3Nz…"
      root: /exchange

A secret is always `{env: NAME}`, never a value: the variable is read when a step starts
(or, outside a run, when the endpoint is used)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resources.endpoints import KINDS, Endpoint, endpoint_resource_key
from schemas.errors import CampaignError
from schemas.messages import did_you_mean

SECRETS = {"password", "private_key", "passphrase", "access_key_id", "secret_access_key"}
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Declared:
    """One endpoint as the file declares it: its kind and its settings, a secret as
    `{"env": NAME}`."""

    name: str
    kind: str
    settings: dict[str, Any]

    @property
    def resource_key(self) -> str:
        return endpoint_resource_key(self.name)

    def with_environment(self) -> Endpoint:
        """The endpoint for use outside a run, its secrets read from the environment now."""
        values = {}
        for key, value in self.settings.items():
            if isinstance(value, dict) and set(value) == {"env"}:
                if value["env"] not in os.environ:
                    raise CampaignError(f"endpoint {self.name}: {key}: the environment variable {value['env']} is not set.")
                value = os.environ[value["env"]]
            values[key] = value
        return KINDS[self.kind](name=self.name, **values)


@dataclass(frozen=True)
class Endpoints:
    """Every endpoint declared, by name."""

    declared: dict[str, Declared] = field(default_factory=dict)
    origin: str = ""

    def get(self, name: str) -> Declared:
        try:
            return self.declared[name]
        except KeyError:
            known = ", ".join(sorted(self.declared)) or f"none: {self.origin or 'no endpoints file'}"
            raise CampaignError(f"endpoint: no endpoint named {name!r}{did_you_mean(name, self.declared)} (declared: {known}).") from None


def load_endpoints(path: Path | None) -> Endpoints:
    """The endpoints `path` declares; none when it does not exist."""
    if path is None or not path.is_file():
        return Endpoints(origin=str(path) if path else "")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CampaignError(f"{path}:{f' line {mark.line + 1}' if mark else ''} is not valid YAML.") from None
    if not isinstance(data, dict):
        raise CampaignError(f"{path}: the endpoints file is a mapping of endpoint names to their settings.")
    return Endpoints({name: _declared(path, name, body) for name, body in data.items()}, str(path))


def _declared(path: Path, name: Any, body: Any) -> Declared:
    if not isinstance(name, str) or not NAME.match(name):
        raise CampaignError(f"{path}: {name!r}: an endpoint's name is lower-case letters, digits and _, starting with a letter.")
    if not isinstance(body, dict):
        raise CampaignError(f"{path}: {name}: an endpoint is a mapping of its settings (type, host, …).")
    settings = dict(body)
    kind = settings.pop("type", None)
    if kind not in KINDS:
        raise CampaignError(f"{path}: {name}.type: must be one of {', '.join(KINDS)}, got {kind!r}.")
    fields = KINDS[kind].model_fields
    allowed = set(fields) - {"name"}
    for key, value in settings.items():
        if key not in allowed:
            raise CampaignError(f"{path}: {name}.{key}: unknown key for a {kind} endpoint{did_you_mean(key, allowed)}.")
        if key in SECRETS and not (isinstance(value, dict) and set(value) == {"env"}):
            raise CampaignError(
                f"{path}: {name}.{key}: a secret is read from the environment: write {{env: VARIABLE_NAME}}, not the value."
            )
    missing = [key for key, info in fields.items() if key != "name" and info.is_required() and key not in settings]
    if missing:
        raise CampaignError(f"{path}: {name}: a {kind} endpoint needs {', '.join(missing)}.")
    return Declared(name, kind, settings)

"""Where an export's finished file goes: in place in the data folder (the writer renamed it
there already), or, when it is to be encrypted or delivered to an endpoint, written first in
the run's work folder, then encrypted (OpenPGP), then delivered whole to the endpoint or
moved into the data folder; then its marker. Readers never see half a file."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from campaign_pipelines.templates import ExportTemplate
from resources import openpgp
from resources.endpoints import Endpoint
from resources.paths import resolve_data_path


@dataclass(frozen=True)
class Delivered:
    path: Path  # the file in the data folder, or the local copy of the one delivered
    uri: str | None  # on an endpoint
    size: int
    sha256: str


@dataclass(frozen=True)
class Delivery:
    template: ExportTemplate
    name: str  # the output path, under the data folder or the endpoint's root
    data_root: Path
    work_dir: Path
    endpoint: Endpoint | None = None
    log: Callable[[str], None] = lambda _: None
    # A part of a multiple export: in place only once every part is written.
    with_others: bool = False

    @property
    def staged(self) -> bool:
        """Written in the work folder first (encrypted, delivered elsewhere, or waiting for other parts)."""
        return self.with_others or self.endpoint is not None or self.template.destination.encrypt is not None

    @property
    def where(self) -> str:
        if self.endpoint is not None:
            return self.endpoint.uri(self.endpoint.inside(self.name, what="output"))
        return str(resolve_data_path(self.data_root, self.name, what="output"))

    def write_path(self) -> Path:
        """Where the writer writes the file."""
        if not self.staged:
            return resolve_data_path(self.data_root, self.name, what="output")
        name = PurePosixPath(self.endpoint.inside(self.name, what="output") if self.endpoint else self.name).name
        path = self.work_dir / "outgoing" / self.template.name / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def __call__(self, written: Path, size: int, sha256: str) -> Delivered:
        """Encrypt, deliver and mark the file the writer finished (`size` and `sha256` its own)."""
        destination = self.template.destination
        file = written
        if destination.encrypt is not None:
            encrypt = destination.encrypt
            file = openpgp.encrypt(
                written, written.with_name(f"{written.name}.encrypted"), [r.env for r in encrypt.recipients],
                encrypt.sign_key.env if encrypt.sign_key else None,
                encrypt.sign_passphrase.env if encrypt.sign_passphrase else None, self.where,
            )
            written.unlink()
            size, sha256 = _measure(file)
        if self.endpoint is not None:
            self.log(f"delivering {self.where}")
            uri = self.endpoint.deliver(file, self.endpoint.inside(self.name, what="output"), marker=destination.marker)
            return Delivered(file, uri, size, sha256)
        final = resolve_data_path(self.data_root, self.name, what="output")
        if file != final:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, final)  # the work folder is inside the data folder: one file system
        if destination.marker:
            Path(f"{final}{destination.marker}").touch()
        return Delivered(final, None, size, sha256)


def _measure(path: Path) -> tuple[int, str]:
    with path.open("rb") as f:
        return path.stat().st_size, hashlib.file_digest(f, "sha256").hexdigest()

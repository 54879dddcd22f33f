"""Where a collector looks for files: the local data folder (`LocalInbox`) or an endpoint's
root (`EndpointInbox`: an SFTP server, a bucket). The collector (sensors.py) asks each the
same things: the complete candidates, their content's identity, and to move a file away
once its run has ended."""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.endpoints import Endpoint, endpoint_resource_key
from resources.paths import resolve_data_path
from schemas.errors import CampaignError

Skip = Callable[[str, list[Any], str], None]  # (name, identity, reason): set aside, said once


@dataclass(frozen=True)
class Seen:
    """A file as one tick saw it: its name under the inbox's root (with /), its size and
    what changes with its content (a local file's mtime, a remote file's ETag or mtime)."""

    name: str
    size: int
    version: Any

    @property
    def identity(self) -> list[Any]:
        return [self.size, self.version]


@dataclass(frozen=True)
class Claim:
    """The file a collector's run was requested for, as the collector saw it complete (its
    run key, the run's `campaign/file_key` tag): the run reads that content or nothing."""

    size: int
    version: str

    @classmethod
    def of(cls, key: str | None) -> Claim | None:
        if not key:
            return None
        _, size, version, _ = key.rsplit("|", 3)
        return cls(int(size), version)

    def check(self, where: str, size: int, version: Any) -> None:
        if (size, str(version)) != (self.size, self.version):
            raise CampaignError(
                f"{where} changed since the collector found it complete ({self.size:,} bytes then, {size:,} now): "
                "nothing was loaded; its new content is collected as a new file."
            )


def file_key(seen: Seen, digest: str) -> str:
    """The run key of a complete file: its name, identity and content (Claim reads it back)."""
    return f"{seen.name}|{seen.size}|{seen.version}|{digest}"


def hidden_or_marker(name: str, marker: str | None) -> bool:
    """Hidden names are files being uploaded (.name.part); markers are signals."""
    base = posixpath.basename(name)
    return base.startswith(".") or base.endswith(".part") or bool(marker and base.endswith(marker))


def archived_name(name: str, run_id: str) -> str:
    """recipients.csv -> recipients.<run_id>.csv (recipients.csv.gz -> recipients.<run_id>.csv.gz)."""
    path = Path(name)
    # The data's own suffix stays with the name's end: .csv.gz, .csv.gpg, .csv.gz.gpg.
    kept = (".gz", ".zip", ".gpg", ".pgp", ".asc")
    depth = 1
    while depth < len(path.suffixes) and path.suffixes[-depth] in kept:
        depth += 1
    suffixes = path.suffixes[-depth:]
    suffix = "".join(suffixes)
    return f"{name[: len(name) - len(suffix)]}.{run_id}{suffix}"


class LocalInbox:
    """The data folder (CAMPAIGN_DATA_DIR): a file is identified by size and mtime, its
    content by SHA-256."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def where(self, name: str) -> str:
        return name

    def candidates(self, pattern: str, marker: str | None, skip: Skip) -> list[Seen]:
        found = []
        for path in sorted(self.root.glob(pattern)):
            name = path.relative_to(self.root).as_posix()
            if hidden_or_marker(name, marker):
                continue
            try:
                info = path.stat()
                resolve_data_path(self.root, path, what="collected file")
            except FileNotFoundError:
                continue  # gone since the listing
            except (OSError, CampaignError) as exc:
                skip(name, [0, 0], str(exc))
                continue
            if not stat.S_ISREG(info.st_mode):
                if not stat.S_ISDIR(info.st_mode):
                    skip(name, [info.st_size, info.st_mtime_ns], "not a regular file")
                continue
            found.append(Seen(name, info.st_size, info.st_mtime_ns))
        return found

    def marked(self, seen: Seen, marker: str) -> bool:
        try:
            # A marker older than the file belongs to an earlier version of it.
            return (self.root / f"{seen.name}{marker}").stat().st_mtime_ns >= seen.version
        except FileNotFoundError:
            return False

    def digest(self, seen: Seen) -> str:
        with (self.root / seen.name).open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def read_text(self, seen: Seen) -> str:
        """A small file's text (a drop's manifest)."""
        return (self.root / seen.name).read_text(encoding="utf-8")

    def tidy(self, folder: str) -> None:
        """A drop's folder, once its files moved away: removed if nothing else is in it."""
        try:
            (self.root / folder).rmdir()
        except OSError:
            pass  # something else is there: left as it is

    def move(self, seen: Seen, folder: str, new_name: str, marker: str | None) -> str:
        target = resolve_data_path(self.root, folder, what="collector folder")
        target.mkdir(parents=True, exist_ok=True)
        destination = target / new_name
        os.replace(self.root / seen.name, destination)
        if marker and (self.root / f"{seen.name}{marker}").exists():
            os.replace(self.root / f"{seen.name}{marker}", f"{destination}{marker}")
        return destination.relative_to(self.root).as_posix()


class EndpointInbox:
    """An endpoint's root: a file is identified by size and ETag (S3) or mtime (SFTP), its
    content by its ETag (S3) or a SHA-256 streamed once (SFTP), remembered in the cursor."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint

    def where(self, name: str) -> str:
        return self.endpoint.uri(name)

    def candidates(self, pattern: str, marker: str | None, skip: Skip) -> list[Seen]:
        return [Seen(f.path, f.size, f.version) for f in self.endpoint.glob(pattern) if not hidden_or_marker(f.path, marker)]

    def marked(self, seen: Seen, marker: str) -> bool:
        return self.endpoint.exists(f"{seen.name}{marker}")

    def digest(self, seen: Seen) -> str:
        return self.endpoint.content_digest(seen.name)

    def read_text(self, seen: Seen) -> str:
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / "file"
            self.endpoint.spool(seen.name, local)
            return local.read_text(encoding="utf-8")

    def tidy(self, folder: str) -> None:
        """A bucket has no folders; an SFTP server's drop folder stays (it may be the sender's)."""

    def move(self, seen: Seen, folder: str, new_name: str, marker: str | None) -> str:
        destination = posixpath.join(folder, new_name)
        self.endpoint.move(seen.name, destination)
        if marker and self.endpoint.exists(f"{seen.name}{marker}"):
            self.endpoint.move(f"{seen.name}{marker}", f"{destination}{marker}")
        return self.endpoint.uri(destination)


def open_inbox(endpoint: str | None, resources: Any) -> LocalInbox | EndpointInbox:
    """The inbox of a template whose source names `endpoint` (None: the data folder), from
    the resources of a sensor tick or a step."""
    if endpoint:
        return EndpointInbox(getattr(resources, endpoint_resource_key(endpoint)))
    return LocalInbox(resources.file_store.root)

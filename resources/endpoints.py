"""Endpoints, Campaign's external accounts: where a template's file is read from or
delivered to when it is not the local data folder. Declared once by the deployment (the
endpoints file, `CAMPAIGN_ENDPOINTS`, docs/endpoints.md), each a Dagster resource
(`endpoint_<name>`) through one file-system layer, fsspec:

- `sftp`: sshfs (asyncssh); the server's host key is pinned, never learnt on first use;
- `s3`: s3fs; the same code serves AWS S3, MinIO, SeaweedFS, Ceph (endpoint URL, region);
- `fsspec`: any other fsspec protocol by its options (Azure Blob `abfs`, GCS `gcs`),
  documented, not tested here.

Secrets (password, private key, passphrase, access keys) come from the environment only:
the file names the variable (`{env: NAME}`), the resource reads it when a step starts, and
no run config, log line or page shows it. A path stays inside the endpoint's root.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from schemas.errors import CampaignError

BLOCK = 8 << 20  # bytes per read or write: streaming, bounded memory
UPLOADS = 4  # an S3 upload's parts in flight at once


class EndpointInterrupted(CampaignError):
    """The connection to the endpoint failed or dropped (refused, reset, timed out, lost
    mid-transfer): trying the step again may succeed (step_errors.py retries it)."""


# Errors of the network, not of the request, by class name anywhere in the error's class
# hierarchy: asyncssh (SFTP), botocore and aiohttp (S3) and the OS's own.
INTERRUPTIONS = frozenset({
    "ConnectionError", "TimeoutError", "FSTimeoutError", "ConnectionLost", "SFTPConnectionLost", "SFTPNoConnection",
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "ClientPayloadError", "ServerDisconnectedError",
    "ClientConnectionError", "ClientOSError",
})


def interrupted(exc: BaseException) -> bool:
    return any(kind.__name__ in INTERRUPTIONS for kind in type(exc).__mro__)


def endpoint_resource_key(name: str) -> str:
    """The resource key of the endpoint `name` (the deployment's resources)."""
    return f"endpoint_{name}"


@dataclass(frozen=True)
class RemoteFile:
    """A file as a listing saw it: its path under the root, its size and what changes with
    its content (an ETag, else the modification time)."""

    path: str
    size: int
    version: str


class Endpoint(dg.ConfigurableResource):
    """What every endpoint does, over its fsspec file system. `name` is the deployment's
    name for it, in every sentence."""

    name: str
    root: str = ""
    _fs: Any = PrivateAttr(default=None)
    _warming: threading.Thread | None = PrivateAttr(default=None)
    _warm_error: CampaignError | None = PrivateAttr(default=None)

    # -- what a kind of endpoint says -------------------------------------------------
    def filesystem(self) -> Any:
        raise NotImplementedError

    def uri(self, path: str) -> str:
        raise NotImplementedError

    def _absolute(self, path: str) -> str:
        return posixpath.join(self.root, path) if self.root else path

    # -- shared ---------------------------------------------------------------------------
    def ready(self, fs: Any) -> None:
        """Whatever the client defers to its first request (S3: its session), done now."""

    @property
    def fs(self) -> Any:
        if self._warming is not None:  # connecting in the background: wait for it, take its error
            self._warming.join()
            self._warming, error, self._warm_error = None, self._warm_error, None
            if error is not None:
                raise error
        if self._fs is None:
            with self.failing("connect"):
                self._fs = self.filesystem()
        return self._fs

    def warm_up(self) -> None:
        """Connect in a background thread (import the client, open the session, log in) while
        the step does other work, such as an export's query: its delivery at the end then
        finds the connection ready (about 0.8 s of an S3 client's start-up overlapped)."""
        if self._fs is None and self._warming is None:
            self._warming = threading.Thread(target=self._connect, name=f"endpoint-{self.name}", daemon=True)
            self._warming.start()

    def _connect(self) -> None:
        try:
            with self.failing("connect"):
                fs = self.filesystem()
                self.ready(fs)
            self._fs = fs
        except CampaignError as exc:
            self._warm_error = exc

    def inside(self, path: str, *, what: str = "path") -> str:
        """`path`, relative to the root, normalized; refused when it leaves the root."""
        normal = posixpath.normpath(path.replace("\\", "/")).lstrip("/") if path else ""
        if not path or path.startswith("/") or normal == ".." or normal.startswith("../") or normal == ".":
            raise CampaignError(f"endpoint {self.name}: {what} '{path}' is not a path under its root ({self.root or '/'}).")
        return normal

    @contextmanager
    def failing(self, action: str, path: str | None = None) -> Iterator[None]:
        """Any error of the endpoint's server or client as one sentence naming endpoint and
        path (never a secret: the messages are the client's, about the connection)."""
        try:
            yield
        except CampaignError:
            raise
        except FileNotFoundError:
            raise CampaignError(f"endpoint {self.name}: {self.uri(path or '')} does not exist.") from None
        except Exception as exc:  # the clients raise many kinds; each becomes the sentence
            where = f" {self.uri(path)}" if path is not None else ""
            sentence = f"endpoint {self.name}: cannot {action}{where} ({describe(exc)})."
            if interrupted(exc):
                self._fs = None  # the next try connects anew
                raise EndpointInterrupted(sentence) from None
            raise CampaignError(sentence) from None

    def glob(self, pattern: str) -> list[RemoteFile]:
        """The files `pattern` matches under the root, in name order, as the server lists
        them now (not a listing cached by an earlier call)."""
        pattern = self.inside(pattern, what="pattern")
        with self.failing("list", pattern):
            self.fs.invalidate_cache()
            found = self.fs.glob(self._absolute(pattern), detail=True)
        files = []
        for full, info in sorted(found.items()):
            if info.get("type") != "file":
                continue
            files.append(RemoteFile(self._relative(full), int(info.get("size") or 0), version(info)))
        return files

    def stat(self, path: str) -> RemoteFile:
        path = self.inside(path)
        with self.failing("read", path):
            self.fs.invalidate_cache()
            info = self.fs.info(self._absolute(path))
        return RemoteFile(path, int(info.get("size") or 0), version(info))

    def exists(self, path: str) -> bool:
        path = self.inside(path)
        with self.failing("read", path):
            self.fs.invalidate_cache()
            return bool(self.fs.exists(self._absolute(path)))

    def content_digest(self, path: str) -> str:
        """What names the file's content: its SHA-256, streamed (S3: its ETag, no download)."""
        path = self.inside(path, what="file")
        digest = hashlib.sha256()
        with self.failing("read", path), self.fs.open(self._absolute(path), "rb", block_size=BLOCK) as remote:
            while block := remote.read(BLOCK):
                digest.update(block)
        return digest.hexdigest()

    def spool(self, path: str, local: Path) -> RemoteFile:
        """Copy the file at `path` to `local`, streaming in blocks; the file as it was listed
        before the copy, which it still is after it (else: one sentence, a file still being
        written or replaced is not read)."""
        before = self.stat(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        with self.failing("read", path), self.fs.open(self._absolute(path), "rb", block_size=BLOCK) as remote, local.open("wb") as out:
            shutil.copyfileobj(remote, out, BLOCK)
            copied = out.tell()
        after = self.stat(path)
        if (after.size, after.version) != (before.size, before.version) or copied != before.size:
            raise CampaignError(
                f"endpoint {self.name}: {self.uri(before.path)} changed while it was read ({before.size:,} bytes listed, "
                f"{copied:,} read, {after.size:,} now); nothing was loaded."
            )
        return before

    def deliver(self, local: Path, path: str, *, marker: str | None = None) -> str:
        """Put the finished file `local` at `path`, so that no reader ever sees half of it
        (each kind says how: `_publish`); then the marker file `<path><marker>`, if asked.
        The file's URI."""
        path = self.inside(path, what="output")
        target = self._absolute(path)
        with self.failing("write", path):
            parent = posixpath.dirname(target)
            if parent:
                self.fs.makedirs(parent, exist_ok=True)
            self._publish(local, target)
            if marker:
                with self.fs.open(target + marker, "wb"):
                    pass
        return self.uri(path)

    def _publish(self, local: Path, target: str) -> None:
        """Under a temporary name, then renamed over the final one (SFTP: posix-rename)."""
        partial = f"{target}.part"
        self.fs.put_file(str(local), partial)
        self.fs.mv(partial, target)

    def move(self, path: str, to: str) -> str:
        path, to = self.inside(path), self.inside(to)
        with self.failing("move", path):
            parent = posixpath.dirname(self._absolute(to))
            if parent:
                self.fs.makedirs(parent, exist_ok=True)
            self.fs.mv(self._absolute(path), self._absolute(to))
        return to

    def remove_folder(self, path: str) -> None:
        """The folder `path` and all it holds (nothing when it is not there)."""
        path = self.inside(path, what="folder")
        with self.failing("remove", path):
            self.fs.invalidate_cache()
            if self.fs.exists(self._absolute(path)):
                self.fs.rm(self._absolute(path), recursive=True)

    def folders(self) -> list[str]:
        """The names of the folders at the root that hold a file (an object store may keep
        a folder's name once its files are gone)."""
        with self.failing("list", ""):
            self.fs.invalidate_cache()
            root = self._absolute("").rstrip("/")
            files = self.fs.find(root, withdirs=False)
        under = [f.lstrip("/").removeprefix(root.lstrip("/") + "/") for f in files if f.lstrip("/").startswith(root.lstrip("/") + "/")]
        return sorted({relative.split("/")[0] for relative in under if "/" in relative})

    def _relative(self, full: str) -> str:
        root = self.root.strip("/")
        full = full.lstrip("/") if root else full
        return full[len(root) + 1 :] if root and full.startswith(root + "/") else full


class SftpEndpoint(Endpoint):
    """An SFTP server. `known_host_key` is the server's public host key as an OpenSSH line
    (`ssh-ed25519 AAAA…`): a server that shows another key is refused. A finished export is
    written under a temporary name, then renamed over the final one (posix-rename)."""

    host: str
    port: int = 22
    user: str
    known_host_key: str
    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None
    timeout: float = 15.0

    def filesystem(self) -> Any:
        with warnings.catch_warnings():  # asyncssh still supports DSA keys; we never use one
            warnings.filterwarnings("ignore", message="DSA is deprecated")
            import asyncssh
            import sshfs

        host_key = asyncssh.import_public_key(" ".join(self.known_host_key.split()[:2]))
        keys = [asyncssh.import_private_key(self.private_key, self.passphrase)] if self.private_key else []
        return sshfs.SSHFileSystem(
            self.host, port=self.port, username=self.user, password=self.password, client_keys=keys,
            known_hosts=([host_key], [], []), agent_path=None, connect_timeout=self.timeout,
            login_timeout=self.timeout, skip_instance_cache=True,
        )

    def uri(self, path: str) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{posixpath.join('/', self.root, path)}"


class S3Endpoint(Endpoint):
    """A bucket of an S3-compatible store, the files under `prefix` (the root). A finished
    export is one upload (a multipart one when large, completed at the end): the object
    appears whole or not at all."""

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    timeout: float = 15.0

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key_id, secret=self.secret_access_key, anon=False,
            endpoint_url=self.endpoint_url, client_kwargs={"region_name": self.region} if self.region else {},
            config_kwargs={"connect_timeout": self.timeout, "read_timeout": 4 * self.timeout, "retries": {"max_attempts": 3}},
            skip_instance_cache=True,
        )

    def _absolute(self, path: str) -> str:
        return posixpath.join(self.bucket, self.root, path) if self.root else posixpath.join(self.bucket, path)

    def _relative(self, full: str) -> str:
        prefix = posixpath.join(self.bucket, self.root).rstrip("/") + "/"
        return full[len(prefix) :] if full.startswith(prefix) else full

    def uri(self, path: str) -> str:
        return f"s3://{posixpath.join(self.bucket, self.root, path)}"

    def _publish(self, local: Path, target: str) -> None:
        # In 8 MiB parts, 4 at a time, completed at the end: memory stays flat whatever the
        # file's size (s3fs would otherwise read a file under 100 MiB whole, for one PUT).
        self.fs.put_file(str(local), target, chunksize=BLOCK, max_concurrency=UPLOADS)

    def ready(self, fs: Any) -> None:
        fs.connect()  # the aiobotocore session and client (botocore's start-up: most of the cost)

    def content_digest(self, path: str) -> str:
        path = self.inside(path, what="file")
        with self.failing("read", path):
            return "etag:" + version(self.fs.info(self._absolute(path), refresh=True))


class FsspecEndpoint(Endpoint):
    """Any other fsspec file system by its protocol and options (Azure Blob: `abfs`, GCS:
    `gcs`): untested here. An export is written under a temporary name, then moved."""

    protocol: str
    options: dict[str, str] = {}

    def filesystem(self) -> Any:
        import fsspec

        return fsspec.filesystem(self.protocol, **self.options)

    def uri(self, path: str) -> str:
        return f"{self.protocol}://{posixpath.join(self.root, path)}"


def version(info: dict[str, Any]) -> str:
    """What changes when a file's content does: its ETag, else its modification time."""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "time"):
        if info.get(key) is not None:
            value = info[key]
            return str(value.timestamp() if hasattr(value, "timestamp") else value).strip('"')
    return ""


def describe(exc: BaseException) -> str:
    """A client error in a few words: the server's refusal, a timeout, a host key."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if name in ("TimeoutError", "FSTimeoutError", "CancelledError") or "timed out" in text.lower():
        return "the server did not answer in time"
    if name == "HostKeyNotVerifiable" or "host key is not trusted" in text.lower():
        return "the server's host key is not the known_host_key declared for it"
    if name == "PermissionDenied" or isinstance(exc, PermissionError):
        return f"permission denied: {text}" if text else "permission denied"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if interrupted(exc):
        return f"the connection was lost: {name}" + (f": {text}" if text else "")
    return f"{name}: {text}" if text else name


KINDS: dict[str, type[Endpoint]] = {"sftp": SftpEndpoint, "s3": S3Endpoint, "fsspec": FsspecEndpoint}

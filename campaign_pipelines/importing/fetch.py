"""The file an import reads, made local and plain: on the data folder as it is, or spooled
from its endpoint into the run's work folder; then decrypted there when the template says
it is OpenPGP-encrypted. What the steps after read is always a local, plain file."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from campaign_pipelines.inbox import Claim
from campaign_pipelines.templates import ImportTemplate
from resources import openpgp
from resources.endpoints import Endpoint
from resources.paths import resolve_data_path

ENCRYPTED_SUFFIXES = (".gpg", ".pgp", ".asc")


def fetch(
    template: ImportTemplate, path: str, data_root: Path, endpoint: Endpoint | None, work_dir: Path, claim: Claim | None = None
) -> tuple[Path, str | None]:
    """(the local file to read, what sentences call the file when that is not it: its URI
    on an endpoint, or the encrypted file it was decrypted from). A collector's run reads
    the content its collector claimed (`claim`), or nothing."""
    origin = None
    if endpoint is not None:
        origin = endpoint.uri(endpoint.inside(path, what="file"))
        file = work_dir / "spool" / PurePosixPath(path).name
        listed = endpoint.spool(path, file)
        if claim is not None:
            claim.check(origin, listed.size, listed.version)
    else:
        file = resolve_data_path(data_root, path, what="file")
        if claim is not None and file.exists():  # a missing file: the read step's own sentence
            claim.check(str(file), file.stat().st_size, file.stat().st_mtime_ns)
    decrypt = template.source.decrypt
    if decrypt is not None:
        name = file.name
        for suffix in ENCRYPTED_SUFFIXES:
            name = name.removesuffix(suffix)
        passphrase = decrypt.passphrase.env if decrypt.passphrase else None
        origin = origin or str(file)
        file = openpgp.decrypt(file, work_dir / "decrypted" / name, decrypt.private_key.env, passphrase, origin)
    return file, origin

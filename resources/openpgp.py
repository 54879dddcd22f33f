"""OpenPGP, with GnuPG (Debian's `gnupg`) through python-gnupg: a file decrypted before an
import reads it (`source.decrypt`), an export's file encrypted to its recipients before it
is delivered (`destination.encrypt`). Keys and passphrases come from the environment; each
call works in a keyring of its own, created for it and removed after it (with its agent),
so no key outlives the step. gpg streams: memory stays flat whatever the file size."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from schemas.errors import CampaignError


def from_environment(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise CampaignError(f"{what}: the environment variable {variable} is not set.")
    return value


@contextmanager
def keyring() -> Iterator[Any]:
    import gnupg

    # A short path: gpg-agent's socket path must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="gpg-", dir="/tmp") as home:
        os.chmod(home, 0o700)
        try:
            # loopback: the passphrase comes from us, never from a prompt or a cached agent.
            yield gnupg.GPG(gnupghome=home, options=["--pinentry-mode", "loopback"])
        finally:
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)


def _import(gpg: Any, variable: str, what: str, secret: bool) -> list[str]:
    imported = gpg.import_keys(from_environment(variable, what))
    fingerprints = [f for f in imported.fingerprints if f]
    if not fingerprints or (secret and not gpg.list_keys(secret=True)):
        kind = "private" if secret else "public"
        raise CampaignError(f"{what}: {variable} does not hold an OpenPGP {kind} key.")
    return fingerprints


def decrypt(file: Path, out: Path, private_key: str, passphrase: str | None, shown: str) -> Path:
    """Decrypt `file` into `out` with the private key in the variable `private_key` (its
    passphrase in `passphrase`). A wrong key or passphrase, a damaged, truncated or
    tampered file, a file that is not encrypted: one sentence, and no `out` left."""
    what = f"{shown}: source.decrypt"
    with keyring() as gpg:
        _import(gpg, private_key, what, secret=True)
        secret = from_environment(passphrase, what) if passphrase else None
        out.parent.mkdir(parents=True, exist_ok=True)
        with file.open("rb") as encrypted:
            result = gpg.decrypt_file(encrypted, passphrase=secret, output=str(out))
    if result.ok:
        return out
    out.unlink(missing_ok=True)
    raise CampaignError(f"{shown}: {_decrypt_failure(result, private_key, passphrase)}; nothing was imported.")


def _decrypt_failure(result: Any, private_key: str, passphrase: str | None) -> str:
    said = result.stderr or ""
    if "no valid OpenPGP data found" in said or result.status == "no data was provided":
        return "is not an OpenPGP-encrypted file, but source.decrypt says it is"
    if "Bad passphrase" in said:
        return f"the passphrase in {passphrase or '(none given)'} does not open the private key in {private_key}"
    if "No secret key" in said and "Wrong secret key" not in said:
        return f"was not encrypted for the private key in {private_key}"
    last = next((line.removeprefix("gpg: ") for line in reversed(said.splitlines()) if line.startswith("gpg: ")), result.status)
    return f"is damaged, truncated or tampered with (gpg: {last})"


def encrypt(file: Path, out: Path, recipients: Sequence[str], sign_key: str | None, sign_passphrase: str | None, shown: str) -> Path:
    """Encrypt `file` into `out` for the public keys in the variables `recipients`, signed
    with the private key in `sign_key` when given."""
    what = f"{shown}: destination.encrypt"
    with keyring() as gpg:
        fingerprints = [f for variable in recipients for f in _import(gpg, variable, what, secret=False)[:1]]
        signer = _import(gpg, sign_key, what, secret=True)[0] if sign_key else None
        secret = from_environment(sign_passphrase, what) if sign_passphrase else None
        with file.open("rb") as plain:
            result = gpg.encrypt_file(
                plain, fingerprints, output=str(out), armor=False, always_trust=True, sign=signer, passphrase=secret
            )
    if not result.ok:
        out.unlink(missing_ok=True)
        raise CampaignError(f"{what}: gpg could not encrypt the file ({result.status}); nothing was delivered.")
    return out

"""OpenPGP with Debian's GnuPG: an encrypted file decrypted before it is read
(`source.decrypt`), an export encrypted to its recipients (`destination.encrypt`), and every
wrong key, passphrase, damaged or plain file as one sentence with nothing loaded."""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import gnupg
import pytest

from tests.helpers import export_template, people_file, people_template

LINES = ("ann@x.org;C1;Ann;Lee", "not-an-email;C2;Bob;Roe", "cy@x.org;C3;Cy;Poe")


class Keys:
    """A keyring of this test session's own: the CRM's key (the import's), another key,
    the warehouse's (an export's recipient); their armored keys as the environment gives them."""

    def __init__(self, home: Path):
        home.mkdir(mode=0o700)
        self.gpg = gnupg.GPG(gnupghome=str(home), options=["--pinentry-mode", "loopback"])
        self.fingerprints = {}
        for name in ("crm", "other", "warehouse"):
            spec = self.gpg.gen_key_input(name_email=f"{name}@example.com", passphrase=f"{name}-passphrase", key_type="RSA", key_length=2048)
            self.fingerprints[name] = self.gpg.gen_key(spec).fingerprint

    def public(self, name: str) -> str:
        return self.gpg.export_keys(self.fingerprints[name])

    def private(self, name: str) -> str:
        return self.gpg.export_keys(self.fingerprints[name], secret=True, passphrase=f"{name}-passphrase")

    def encrypt(self, data: bytes, to: str) -> bytes:
        result = self.gpg.encrypt(data, [self.fingerprints[to]], always_trust=True, armor=False)
        assert result.ok, result.status
        return result.data

    def decrypt(self, data: bytes, name: str) -> gnupg.Crypt:
        return self.gpg.decrypt(data, passphrase=f"{name}-passphrase")


@pytest.fixture(scope="session")
def keys() -> Any:
    with tempfile.TemporaryDirectory(prefix="gpg-keys-", dir="/tmp") as folder:
        yield Keys(Path(folder) / "home")


@pytest.fixture
def crm_key(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Keys:
    """The import's private key and passphrase in the environment, as a deployment sets them."""
    monkeypatch.setenv("CRM_PGP_KEY", keys.private("crm"))
    monkeypatch.setenv("CRM_PGP_PASSPHRASE", "crm-passphrase")
    return keys


DECRYPT = {"private_key": {"env": "CRM_PGP_KEY"}, "passphrase": {"env": "CRM_PGP_PASSPHRASE"}}


def encrypted_import(campaign: Any, path: str = "inbox/people.csv.gpg") -> None:
    campaign.template(people_template(source={"path": path, "delimiter": ";", "decrypt": DECRYPT}))


def test_an_encrypted_file_is_decrypted_then_read_with_its_lines_and_rejects(campaign, crm_key):
    campaign.file("inbox/people.csv.gpg", crm_key.encrypt(people_file(*LINES).encode(), "crm"))
    encrypted_import(campaign)
    result = campaign.run("people")
    assert result.success, result.error
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (2, 1)
    # The rejects file is the plain input's shape (its lines, readable), named .csv.
    assert (campaign.data_dir / "rejects" / "people" / f"{result.run_id}.csv").read_text().splitlines()[1:] == [LINES[1]]
    assert not (campaign.data_dir / ".work" / result.run_id).exists()  # no plain copy left behind


def test_an_encrypted_gzip_file_is_decrypted_then_decompressed(campaign, crm_key):
    campaign.file("inbox/people.csv.gz.gpg", crm_key.encrypt(gzip.compress(people_file(*LINES).encode()), "crm"))
    encrypted_import(campaign, "inbox/people.csv.gz.gpg")
    result = campaign.run("people")
    assert result.success, result.error
    assert result.counts["rows_inserted"] == 2


def failed_import(campaign: Any, content: bytes) -> str:
    campaign.file("inbox/people.csv.gpg", content)
    encrypted_import(campaign)
    result = campaign.run("people")
    assert (result.success, result.status) == (False, "failed")
    assert campaign.rows("recipient", "email") == []
    return result.error


def test_a_file_encrypted_for_another_key_is_one_sentence(campaign, crm_key):
    path = campaign.data_dir / "inbox" / "people.csv.gpg"
    error = failed_import(campaign, crm_key.encrypt(people_file(*LINES).encode(), "other"))
    assert error == f"{path}: was not encrypted for the private key in CRM_PGP_KEY; nothing was imported."


def test_a_wrong_passphrase_is_one_sentence(campaign, crm_key, monkeypatch):
    monkeypatch.setenv("CRM_PGP_PASSPHRASE", "not-it")
    path = campaign.data_dir / "inbox" / "people.csv.gpg"
    error = failed_import(campaign, crm_key.encrypt(people_file(*LINES).encode(), "crm"))
    assert error == f"{path}: the passphrase in CRM_PGP_PASSPHRASE does not open the private key in CRM_PGP_KEY; nothing was imported."
    assert "not-it" not in error


@pytest.mark.parametrize("damage", ["truncated", "tampered"])
def test_a_truncated_or_tampered_file_is_one_sentence(campaign, crm_key, damage):
    sealed = bytearray(crm_key.encrypt(people_file(*LINES * 50).encode(), "crm"))
    if damage == "truncated":
        sealed = sealed[: len(sealed) - 40]
    else:
        sealed[-60] ^= 0x55  # in the encrypted data, past the session key
    error = failed_import(campaign, bytes(sealed))
    assert error.startswith(f"{campaign.data_dir / 'inbox' / 'people.csv.gpg'}: is damaged, truncated or tampered with (gpg: ")
    assert error.endswith("); nothing was imported.")


def test_a_plain_file_announced_as_encrypted_is_one_sentence(campaign, crm_key):
    error = failed_import(campaign, people_file(*LINES).encode())
    assert error.endswith(": is not an OpenPGP-encrypted file, but source.decrypt says it is; nothing was imported.")


def test_a_missing_key_variable_is_one_sentence(campaign, crm_key, monkeypatch):
    monkeypatch.delenv("CRM_PGP_KEY")
    error = failed_import(campaign, crm_key.encrypt(people_file(*LINES).encode(), "crm"))
    assert error.endswith(": source.decrypt: the environment variable CRM_PGP_KEY is not set.")


# ---------------------------------------------------------------------------------------
# Exports


def loaded(campaign: Any, keys: Keys) -> None:
    campaign.file("inbox/people.csv.gpg", keys.encrypt(people_file(*LINES).encode(), "crm"))
    encrypted_import(campaign)
    assert campaign.run("people").success


def test_an_export_is_encrypted_to_its_recipient_and_signed(campaign, crm_key, monkeypatch):
    loaded(campaign, crm_key)
    monkeypatch.setenv("WAREHOUSE_PGP_KEY", crm_key.public("warehouse"))
    encrypt = {"recipients": [{"env": "WAREHOUSE_PGP_KEY"}], "sign_key": {"env": "CRM_PGP_KEY"}, "sign_passphrase": {"env": "CRM_PGP_PASSPHRASE"}}
    campaign.template(export_template(destination={"path": "outbox/emails.csv.gpg", "encrypt": encrypt, "marker": ".done"}))
    result = campaign.run("out")
    assert result.success, result.error
    delivered = (campaign.data_dir / "outbox" / "emails.csv.gpg").read_bytes()
    opened = crm_key.decrypt(delivered, "warehouse")
    assert opened.ok, opened.status
    assert opened.data.decode().splitlines() == ["email", "ann@x.org", "cy@x.org"]
    assert opened.fingerprint == crm_key.fingerprints["crm"]  # signed by the CRM's key
    assert result.counts["sha256"] == hashlib.sha256(delivered).hexdigest()
    assert sorted(p.name for p in (campaign.data_dir / "outbox").iterdir()) == ["emails.csv.gpg", "emails.csv.gpg.done"]
    assert not (campaign.data_dir / ".work" / result.run_id).exists()  # the plain file went with the work data


def test_an_export_to_a_recipient_key_that_is_not_a_key_is_one_sentence(campaign, crm_key, monkeypatch):
    loaded(campaign, crm_key)
    monkeypatch.setenv("WAREHOUSE_PGP_KEY", "not a key")
    campaign.template(export_template(destination={"path": "outbox/emails.csv.gpg", "encrypt": {"recipients": [{"env": "WAREHOUSE_PGP_KEY"}]}}))
    result = campaign.run("out")
    assert not result.success
    assert result.error == (
        f"{campaign.data_dir / 'outbox' / 'emails.csv.gpg'}: destination.encrypt: WAREHOUSE_PGP_KEY does not hold an OpenPGP public key."
    )
    assert not (campaign.data_dir / "outbox" / "emails.csv.gpg").exists()

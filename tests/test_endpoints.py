"""Endpoints against the real servers `.ci/test-servers` starts: an sshd for SFTP and
SeaweedFS for S3, on SQLite and PostgreSQL. Imports read their file from an endpoint,
exports are delivered to one whole; every fault is one sentence naming endpoint and path,
and nothing is loaded."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import posixpath
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from campaign_pipelines.cli import main
from campaign_pipelines.code_location import build_definitions
from resources.endpoint_file import Declared, load_endpoints
from schemas.errors import CampaignError
from campaign_pipelines.names import FILE_TAG
from tests.conftest import require_service
from tests.test_collector import Collector
from tests.helpers import export_template, people_file, people_template

SFTP_PORT = int(os.environ.get("CAMPAIGN_TEST_SFTP_PORT", "2222"))
S3_URL = os.environ.get("CAMPAIGN_TEST_S3_URL", "http://127.0.0.1:8333")
BUCKET = "campaign-test"


def _needed(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        message = f"{variable} is not set: start the servers with .ci/test-servers (see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return value


def sftp_declaration(monkeypatch: pytest.MonkeyPatch, root: str, **changes: Any) -> dict[str, Any]:
    require_service("the SFTP server", "127.0.0.1", SFTP_PORT)
    monkeypatch.setenv("TEST_SFTP_KEY", Path(_needed("CAMPAIGN_TEST_SFTP_KEY_FILE")).read_text())
    base = _needed("CAMPAIGN_TEST_SFTP_ROOT")
    return {
        "type": "sftp", "host": "127.0.0.1", "port": SFTP_PORT, "user": _needed("CAMPAIGN_TEST_SFTP_USER"),
        "private_key": {"env": "TEST_SFTP_KEY"},
        "known_host_key": Path(_needed("CAMPAIGN_TEST_SFTP_HOST_KEY_FILE")).read_text().strip(),
        "root": posixpath.join(base, root), **changes,
    }


def s3_declaration(monkeypatch: pytest.MonkeyPatch, root: str, **changes: Any) -> dict[str, Any]:
    host, port = S3_URL.removeprefix("http://").split(":")
    require_service("the S3 server", host, int(port))
    monkeypatch.setenv("TEST_S3_KEY", _needed("CAMPAIGN_TEST_S3_KEY"))
    monkeypatch.setenv("TEST_S3_SECRET", _needed("CAMPAIGN_TEST_S3_SECRET"))
    return {
        "type": "s3", "endpoint_url": S3_URL, "bucket": BUCKET, "region": "us-east-1", "root": root,
        "access_key_id": {"env": "TEST_S3_KEY"}, "secret_access_key": {"env": "TEST_S3_SECRET"}, **changes,
    }


DECLARATIONS = {"sftp": sftp_declaration, "s3": s3_declaration}


class Remote:
    """The test's endpoint `partner`, in a folder (or prefix) of its own on the real server."""

    def __init__(self, campaign: Any, kind: str, monkeypatch: pytest.MonkeyPatch, **changes: Any):
        self.campaign, self.kind = campaign, kind
        self.declaration = DECLARATIONS[kind](monkeypatch, f"t{uuid.uuid4().hex[:12]}", **changes)
        self.declare(partner=self.declaration)
        self.endpoint = self.declared("partner").with_environment()
        if kind == "s3":
            with contextlib.suppress(FileExistsError):  # another test worker made it first
                self.endpoint.fs.mkdir(BUCKET)
        self.endpoint.fs.makedirs(self.endpoint._absolute(""), exist_ok=True)

    def declare(self, **endpoints: dict[str, Any]) -> None:
        self.campaign.endpoints_file.write_text(yaml.safe_dump(endpoints, sort_keys=False))

    def declared(self, name: str) -> Declared:
        return load_endpoints(self.campaign.endpoints_file).get(name)

    def put(self, path: str, content: bytes) -> None:
        full = self.endpoint._absolute(path)
        self.endpoint.fs.makedirs(posixpath.dirname(full), exist_ok=True)
        self.endpoint.fs.pipe_file(full, content)

    def get(self, path: str) -> bytes:
        return self.endpoint.fs.cat_file(self.endpoint._absolute(path))

    def names(self, folder: str) -> list[str]:
        listed = self.endpoint.fs.ls(self.endpoint._absolute(folder), detail=False, refresh=True)
        return sorted(name for p in listed if (name := posixpath.basename(p)))  # not the folder's own entry


@pytest.fixture(params=["sftp", "s3"])
def remote(request: pytest.FixtureRequest, campaign: Any, monkeypatch: pytest.MonkeyPatch) -> Remote:
    return Remote(campaign, request.param, monkeypatch)


LINES = ("ann@x.org;C1;Ann;Lee", "not-an-email;C2;Bob;Roe", "cy@x.org;C3;Cy;Poe")


def remote_import(campaign: Any, path: str = "inbox/people.csv", errors: dict | None = None, **source: Any) -> None:
    campaign.template(people_template(source={"path": path, "delimiter": ";", "endpoint": "partner", **source}, errors=errors))


def test_an_import_reads_its_file_from_the_endpoint_with_lines_and_rejects(campaign, remote):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    result = campaign.run("people")
    assert result.success, result.error
    assert (result.counts["rows_read"], result.counts["rows_inserted"], result.counts["rows_rejected"]) == (3, 2, 1)
    assert [r["email"] for r in campaign.rows("recipient", "email", order_by="email")] == ["ann@x.org", "cy@x.org"]
    # The rejects file is the input's shape: the header and the rejected line, line 3 of the file.
    rejects_dir = campaign.data_dir / "rejects" / "people"
    rejects_file = rejects_dir / f"{result.run_id}.csv"
    assert rejects_file.read_text().splitlines()[1:] == ["not-an-email;C2;Bob;Roe"]
    reasons = (rejects_dir / f"{result.run_id}.reasons.csv").read_text()
    assert reasons.splitlines()[1].startswith("3,")
    # Nothing of the spooled copy is left once the run succeeded.
    assert not (campaign.data_dir / ".work" / result.run_id).exists()


def test_a_compressed_file_on_the_endpoint_reads_as_a_local_one(campaign, remote):
    remote.put("inbox/people.csv.gz", gzip.compress(people_file(*LINES).encode()))
    remote_import(campaign, path="inbox/people.csv.gz")
    result = campaign.run("people")
    assert result.success, result.error
    assert (result.counts["rows_inserted"], result.counts["rows_rejected"]) == (2, 1)


def test_the_file_read_is_named_by_its_uri_in_the_runs_metadata(campaign, remote):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    result = campaign.run("people")
    (materialization,) = [
        e for e in result.dagster.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key.endswith("read_file")
    ]
    uri = materialization.event_specific_data.metadata["file"].value
    assert uri == remote.endpoint.uri("inbox/people.csv")
    assert uri.startswith("sftp://campaign-test@127.0.0.1:" if remote.kind == "sftp" else f"s3://{BUCKET}/t")


def test_an_export_is_delivered_whole_with_its_marker_and_checksum(campaign, remote):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    assert campaign.run("people").success
    campaign.template(export_template(destination={"path": "outbox/emails.csv", "endpoint": "partner", "marker": ".done"}))
    result = campaign.run("out")
    assert result.success, result.error
    delivered = remote.get("outbox/emails.csv")
    assert delivered.decode().splitlines() == ["email", "ann@x.org", "cy@x.org"]
    assert remote.names("outbox") == ["emails.csv", "emails.csv.done"]  # no temporary name left
    assert remote.get("outbox/emails.csv.done") == b""
    assert result.counts["sha256"] == hashlib.sha256(delivered).hexdigest()
    assert result.counts["output_path"] == remote.endpoint.uri("outbox/emails.csv")
    # The local copy it was written to went with the run's work data.
    assert not (campaign.data_dir / "outbox" / "emails.csv").exists()


def test_a_second_export_replaces_the_first_whole(campaign, remote):
    campaign.template(export_template(destination={"path": "outbox/emails.csv", "endpoint": "partner"}))
    assert campaign.run("out").success
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    assert campaign.run("people").success
    assert campaign.run("out").success
    assert remote.get("outbox/emails.csv").decode().splitlines() == ["email", "ann@x.org", "cy@x.org"]
    assert remote.names("outbox") == ["emails.csv"]


def test_the_rejects_files_are_delivered_to_the_endpoint_the_template_names(campaign, remote):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign, errors={"rejects_to": {"endpoint": "partner", "folder": "rejects/crm"}})
    result = campaign.run("people")
    assert result.success, result.error
    run = result.run_id
    assert remote.names("rejects/crm") == sorted([f"{run}.csv", f"{run}.reasons.csv"])
    local = campaign.data_dir / "rejects" / "people"
    assert remote.get(f"rejects/crm/{run}.csv") == (local / f"{run}.csv").read_bytes()
    assert remote.get(f"rejects/crm/{run}.reasons.csv") == (local / f"{run}.reasons.csv").read_bytes()
    (materialization,) = [
        e.event_specific_data.materialization for e in result.dagster.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.path[0] == "rejects"
    ]
    assert materialization.metadata["rejects_uri"].value == remote.endpoint.uri(f"rejects/crm/{run}.csv")


def test_rejects_an_endpoint_refuses_leave_the_load_standing_with_a_warning(campaign, remote, monkeypatch):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    refusing = s3_declaration(monkeypatch, "refused", secret_access_key={"env": "TEST_WRONG_SECRET"})
    monkeypatch.setenv("TEST_WRONG_SECRET", "not-the-secret")
    remote.declare(partner=remote.declaration, back=refusing)
    remote_import(campaign, errors={"rejects_to": {"endpoint": "back"}})
    result = campaign.run("people")
    assert result.success and result.counts["rows_inserted"] == 2, result.error
    warnings = [e.message for e in campaign.instance.all_logs(result.run_id) if "rejects files were not delivered" in (e.message or "")]
    assert len(warnings) == 1 and "endpoint back: cannot write " in warnings[0]
    assert (campaign.data_dir / "rejects" / "people" / f"{result.run_id}.csv").exists()  # kept here all the same


def test_preview_reads_the_file_from_the_endpoint(campaign, remote, capsys):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    assert main(["templates", "preview", "people"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 line(s) read, 2 valid, 1 rejected")
    assert "ann@x.org" in out


# ---------------------------------------------------------------------------------------
# Faults: one sentence naming endpoint and path, nothing loaded


def assert_nothing_loaded(campaign: Any, result: Any) -> None:
    assert (result.success, result.status) == (False, "failed")
    assert campaign.rows("recipient", "email") == []


def test_a_missing_file_is_one_sentence(campaign, remote):
    remote_import(campaign, path="inbox/absent.csv")
    result = campaign.run("people")
    assert_nothing_loaded(campaign, result)
    assert result.error == f"endpoint partner: {remote.endpoint.uri('inbox/absent.csv')} does not exist."


def test_a_path_that_leaves_the_endpoints_root_is_refused(campaign, remote):
    remote_import(campaign, path="../../etc/passwd")
    result = campaign.run("people")
    assert_nothing_loaded(campaign, result)
    assert result.error == (
        f"endpoint partner: file '../../etc/passwd' is not a path under its root ({remote.declaration['root']})."
    )


@pytest.mark.parametrize("kind", ["sftp", "s3"])
def test_wrong_credentials_are_one_sentence(campaign, monkeypatch, kind):
    remote = Remote(campaign, kind, monkeypatch)
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    if kind == "sftp":
        monkeypatch.setenv("TEST_SFTP_KEY", Path(os.environ["CAMPAIGN_TEST_SFTP_HOST_KEY_FILE"].removesuffix(".pub")).read_text())
    else:
        monkeypatch.setenv("TEST_S3_SECRET", "not-the-secret")
    remote_import(campaign)
    result = campaign.run("people")
    assert_nothing_loaded(campaign, result)
    assert result.error.startswith("endpoint partner: cannot ")
    assert "permission denied" in result.error.lower() or "denied" in result.error.lower()
    assert "not-the-secret" not in result.error


def test_an_sftp_password_from_the_environment_works(campaign, monkeypatch):
    remote = Remote(campaign, "sftp", monkeypatch)
    declaration = {k: v for k, v in remote.declaration.items() if k != "private_key"}
    monkeypatch.setenv("TEST_SFTP_PASSWORD", _needed("CAMPAIGN_TEST_SFTP_PASSWORD"))
    remote.declare(partner={**declaration, "password": {"env": "TEST_SFTP_PASSWORD"}})
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    result = campaign.run("people")
    assert result.success, result.error
    assert result.counts["rows_inserted"] == 2


def test_a_server_showing_another_host_key_is_refused(campaign, monkeypatch):
    remote = Remote(campaign, "sftp", monkeypatch)
    other = Path(os.environ["CAMPAIGN_TEST_SFTP_KEY_FILE"] + ".pub").read_text().strip()  # a key, not the host's
    remote.declare(partner={**remote.declaration, "known_host_key": other})
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    result = campaign.run("people")
    assert_nothing_loaded(campaign, result)
    assert result.error.startswith("endpoint partner: cannot ")
    assert "host key is not the known_host_key declared for it" in result.error


def test_an_unknown_host_is_one_sentence(campaign, monkeypatch):
    remote = Remote(campaign, "sftp", monkeypatch)
    remote.declare(partner={**remote.declaration, "host": "no-such-host.invalid"})
    remote_import(campaign)
    result = campaign.run("people")
    assert_nothing_loaded(campaign, result)
    assert result.error.startswith("endpoint partner: cannot connect (")
    assert "no-such-host.invalid" in result.error or "Name or service not known" in result.error, result.error


def test_an_export_whose_endpoint_cannot_connect_is_one_sentence(campaign, monkeypatch):
    """The export connects in the background while its query runs (Endpoint.warm_up): the
    connection's failure is still the step's one sentence, and nothing is delivered."""
    remote = Remote(campaign, "sftp", monkeypatch)
    remote.declare(partner={**remote.declaration, "host": "no-such-host.invalid"})
    campaign.template(export_template(destination={"path": "outbox/emails.csv", "endpoint": "partner"}))
    result = campaign.run("out")
    assert (result.success, result.status) == (False, "failed")
    assert result.error.startswith("endpoint partner: cannot connect ("), result.error


def test_a_server_that_does_not_answer_times_out_with_a_sentence(campaign, monkeypatch):
    """A port that accepts connections and never speaks: the client gives up after the
    endpoint's timeout instead of hanging."""
    remote = Remote(campaign, "sftp", monkeypatch)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True)
    accepting.start()
    try:
        remote.declare(partner={**remote.declaration, "port": silent.getsockname()[1], "timeout": 2})
        remote_import(campaign)
        result = campaign.run("people")
    finally:
        silent.close()
        for conn in held:
            conn.close()
    assert_nothing_loaded(campaign, result)
    assert result.error.startswith("endpoint partner: cannot connect")
    assert "the server did not answer in time" in result.error


def test_a_template_naming_an_undeclared_endpoint_skips_alone(campaign, remote):
    campaign.template(people_template(name="lost", source={"path": "inbox/p.csv", "endpoint": "partnr"}))
    jobs = {job.name: job for job in build_definitions(campaign.settings).resolve_all_job_defs()}
    assert "import_recipients" in jobs
    assert "source.endpoint: no endpoint named 'partnr' (did you mean 'partner'?)" in jobs["lost"].description


def test_a_secret_written_in_the_endpoints_file_is_refused(campaign, tmp_path):
    campaign.endpoints_file.write_text("partner: {type: s3, bucket: b, secret_access_key: hunter2}\n")
    with pytest.raises(CampaignError) as refused:
        load_endpoints(campaign.endpoints_file)
    assert str(refused.value) == (
        f"{campaign.endpoints_file}: partner.secret_access_key: a secret is read from the environment: "
        "write {env: VARIABLE_NAME}, not the value."
    )
    assert "hunter2" not in str(refused.value)


def test_the_endpoints_secrets_are_never_in_a_runs_config(campaign, remote):
    remote.put("inbox/people.csv", people_file(*LINES).encode())
    remote_import(campaign)
    result = campaign.run("people")
    stored = campaign.instance.get_run_by_id(result.run_id)
    secret = os.environ["TEST_SFTP_KEY"] if remote.kind == "sftp" else os.environ["TEST_S3_SECRET"]
    assert secret.strip()[:40] not in repr(stored.run_config)
    logs = [e.message for e in campaign.instance.all_logs(result.run_id) if e.message]
    assert not any(secret.strip()[:40] in message for message in logs)


# ---------------------------------------------------------------------------------------
# The collector on a remote inbox

REMOTE_COLLECTOR = {"watch": "inbox/crm/people_*.csv", "archive": "archive/crm", "error": "error/crm"}


def remote_collector(campaign: Any, **collector: Any) -> Collector:
    campaign.template(
        people_template(source={"path": "inbox/people.csv", "delimiter": ";", "endpoint": "partner"},
                        collector={**REMOTE_COLLECTOR, **collector})
    )
    return Collector(campaign)


def test_a_remote_inbox_is_collected_once_per_content_then_archived_on_the_endpoint(campaign, remote):
    collector = remote_collector(campaign)
    remote.put("inbox/crm/people_2.csv", people_file("bob@x.org;C2;Bob;Ray").encode())
    remote.put("inbox/crm/people_1.csv", people_file("ann@x.org;C1;Ann;Lee").encode())
    remote.put("inbox/crm/other.csv", people_file("zed@x.org;C9;Zed;Roe").encode())  # not matched
    assert collector.tick() == []  # first sight: it may still be growing
    requests = collector.tick()
    assert [r.tags[FILE_TAG] for r in requests] == [remote.endpoint.uri(f"inbox/crm/people_{i}.csv") for i in (1, 2)]
    assert [r.run_key for r in collector.tick()] == [r.run_key for r in requests]  # the same run keys: Dagster runs each once
    runs = collector.run(requests)
    assert all(r.success for r in runs), [r.error for r in runs]
    assert collector.tick() == []
    assert remote.names("inbox/crm") == ["other.csv"]
    assert remote.names("archive/crm") == sorted(f"people_{i}.{r.run_id}.csv" for i, r in zip((1, 2), runs))
    assert [r["email"] for r in campaign.rows("recipient", "email", order_by="email")] == ["ann@x.org", "bob@x.org"]
    # A restarted daemon (a new tick from the saved cursor) finds nothing left to do.
    assert Collector(campaign).tick() == [] and collector.tick() == []


def test_a_remote_file_whose_run_failed_moves_to_error(campaign, remote):
    collector = remote_collector(campaign)
    remote.put("inbox/crm/people_1.csv", b"not;the;header\nx\n")
    collector.tick()
    (request,) = collector.tick()
    (run,) = collector.run([request])
    assert not run.success
    collector.tick()
    assert remote.names("error/crm") == [f"people_1.{run.run_id}.csv"]
    assert remote.names("inbox/crm") == []


def test_a_remote_file_waits_for_its_marker(campaign, remote):
    collector = remote_collector(campaign, ready_marker=".done")
    remote.put("inbox/crm/people_1.csv", people_file("ann@x.org;C1;Ann;Lee").encode())
    assert collector.tick() == [] and collector.tick() == []
    remote.put("inbox/crm/people_1.csv.done", b"")
    (request,) = collector.tick()
    (run,) = collector.run([request])
    assert run.success, run.error
    collector.tick()
    assert remote.names("archive/crm") == [f"people_1.{run.run_id}.csv", f"people_1.{run.run_id}.csv.done"]


def test_an_unreachable_remote_inbox_skips_the_tick_with_its_sentence(campaign, monkeypatch):
    remote = Remote(campaign, "s3", monkeypatch)
    collector = remote_collector(campaign)
    monkeypatch.setenv("TEST_S3_SECRET", "not-the-secret")
    defs = build_definitions(campaign.settings)
    repository = defs.get_repository_def()
    sensor = repository.get_sensor_def("people_collector")
    with dg.build_sensor_context(instance=campaign.instance, resources=repository.get_top_level_resources()) as context:
        data = sensor.evaluate_tick(context)
    assert not data.run_requests
    assert data.skip_message.startswith("endpoint partner: cannot list ")
    del collector


def test_the_sftp_to_bucket_example_runs_against_the_servers():
    """examples/crm_sftp_to_bucket/run.py, as the README runs it: two nights of encrypted
    files collected from SFTP, two differential exports delivered to the bucket."""
    _needed("CAMPAIGN_TEST_SERVERS")
    example = Path(__file__).resolve().parent.parent / "examples" / "crm_sftp_to_bucket" / "run.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert sum("collector run" in line and "archived as archive/crm/recipients_2025010" in line for line in lines) == 2
    exports = [line for line in lines if "export run" in line]
    assert len(exports) == 2 and all(": finished; s3://warehouse-example/recipients/" in line and "(+ .done: True)" in line for line in exports)
    assert "    4,CRM-5,victor.hugo@example.org,BE," in done.stdout  # the second night's change, alone with its update

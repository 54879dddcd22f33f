"""Faults on the way to and from an endpoint, against the real servers: a connection cut
mid-transfer (a relay in front of the server cuts it: tests/cutting_proxy.py), a file
deleted or still growing after the collector listed it, an archive the endpoint refuses.
Each is one sentence naming endpoint and path; nothing is lost, nothing loaded twice."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from campaign_pipelines.names import FILE_TAG
from schemas.errors import CampaignError
from tests.cutting_proxy import CuttingProxy
from tests.helpers import export_template, people_file
from tests.test_endpoints import Remote, assert_nothing_loaded, remote, remote_collector, remote_import  # noqa: F401

MANY = [f"p{i}@x.org;C{i};Ann;Lee" for i in range(20_000)]  # about 500 KB: many blocks on the wire


def through(remote: Remote, proxy: CuttingProxy) -> None:
    """Declare the test's endpoint `partner` as reached through `proxy`."""
    if remote.kind == "sftp":
        remote.declare(partner={**remote.declaration, "port": proxy.port})
    else:
        remote.declare(partner={**remote.declaration, "endpoint_url": f"http://127.0.0.1:{proxy.port}"})


@pytest.fixture
def cutting(remote: Remote) -> Iterator[Any]:
    """Make a relay to `remote`'s server that cuts connections, and route `partner` through it."""
    proxies: list[CuttingProxy] = []

    def make(**cut: Any) -> CuttingProxy:
        port = remote.declaration["port"] if remote.kind == "sftp" else int(remote.declaration["endpoint_url"].rsplit(":", 1)[1])
        proxy = CuttingProxy(port, **cut)
        proxies.append(proxy)
        through(remote, proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def warnings_of(campaign: Any, run_id: str) -> list[str]:
    return [e.message for e in campaign.instance.all_logs(run_id) if e.message and "trying again" in e.message]


def test_a_connection_cut_mid_download_is_tried_again_and_the_file_loads_once(campaign, remote, cutting):
    remote.put("inbox/people.csv", people_file(*MANY).encode())
    proxy = cutting(cut_after=100_000, direction="down", cuts=1)
    remote_import(campaign)
    result = campaign.run("people")
    assert result.success, result.error
    assert proxy.cut == 1  # the link did drop mid-transfer
    assert (result.counts["rows_read"], result.counts["rows_inserted"]) == (20_000, 20_000)
    assert len(campaign.rows("recipient", "email")) == 20_000
    if remote.kind == "sftp":  # S3's client retries a cut GET itself, within the step
        (warning,) = warnings_of(campaign, result.run_id)
        assert "the connection was lost" in warning and "trying again in 1 s (try 2 of 4)" in warning


def test_a_connection_cut_on_every_try_fails_with_one_sentence(campaign, remote, cutting):
    remote.put("inbox/people.csv", people_file(*MANY).encode())
    proxy = cutting(cut_after=100_000, direction="down", cuts=-1)
    remote_import(campaign)
    result = campaign.run("people")
    assert_nothing_loaded(campaign, result)
    assert proxy.cut >= 4
    uri = remote.declared("partner").with_environment().uri("inbox/people.csv")
    assert result.error.startswith(f"endpoint partner: cannot read {uri} (the connection was lost")
    assert result.error.endswith("), and on 3 more tries.")
    assert len(warnings_of(campaign, result.run_id)) == 3


def exported_rows(campaign: Any, remote: Remote) -> None:
    remote.put("inbox/people.csv", people_file(*MANY).encode())
    remote_import(campaign)
    assert campaign.run("people").success
    campaign.template(export_template(destination={"path": "outbox/emails.csv", "endpoint": "partner", "marker": ".done"}))


def test_an_upload_cut_half_way_leaves_nothing_at_the_final_name_and_the_next_run_delivers(campaign, remote, cutting):
    exported_rows(campaign, remote)
    proxy = cutting(cut_after=150_000, direction="up", cuts=-1)
    failed = campaign.run("out")
    assert (failed.success, failed.status) == (False, "failed")
    assert proxy.cut >= 4
    assert failed.error.startswith("endpoint partner: cannot write ") and failed.error.endswith("), and on 3 more tries.")
    visible = remote.names("outbox") if remote.endpoint.fs.exists(remote.endpoint._absolute("outbox")) else []
    assert "emails.csv" not in visible and "emails.csv.done" not in visible
    proxy.allow()
    result = campaign.run("out")
    assert result.success, result.error
    delivered = remote.get("outbox/emails.csv").decode().splitlines()
    assert len(delivered) == 20_001 and delivered[0] == "email"
    assert remote.get("outbox/emails.csv.done") == b""


def test_an_upload_cut_once_is_tried_again_in_the_same_run(campaign, remote, cutting):
    exported_rows(campaign, remote)
    proxy = cutting(cut_after=150_000, direction="up", cuts=1)
    result = campaign.run("out")
    assert result.success, result.error
    assert proxy.cut == 1
    assert len(remote.get("outbox/emails.csv").decode().splitlines()) == 20_001


# ---------------------------------------------------------------------------------------
# The collector: a file changing after it was found complete, an archive refused


def test_a_file_deleted_after_the_collector_claimed_it_fails_its_run_and_nothing_is_left_behind(campaign, remote):
    collector = remote_collector(campaign)
    remote.put("inbox/crm/people_1.csv", people_file("ann@x.org;C1;Ann;Lee").encode())
    collector.tick()
    (request,) = collector.tick()
    remote.endpoint.fs.rm(remote.endpoint._absolute("inbox/crm/people_1.csv"))
    (run,) = collector.run([request])
    assert_nothing_loaded(campaign, run)
    assert run.error == f"endpoint partner: {request.tags[FILE_TAG]} does not exist."
    assert collector.tick() == []  # nothing to move, nothing to ask again


def test_a_file_still_growing_after_the_claim_is_not_read_then_collected_whole(campaign, remote):
    """The sender appends after two equal listings (a pause in its upload): the run the
    collector asked for reads nothing; the whole file, once stable, is a new file, loaded once."""
    collector = remote_collector(campaign)
    remote.put("inbox/crm/people_1.csv", people_file("ann@x.org;C1;Ann;Lee").encode())
    collector.tick()
    (request,) = collector.tick()
    remote.put("inbox/crm/people_1.csv", people_file("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray").encode())
    (run,) = collector.run([request])
    assert_nothing_loaded(campaign, run)
    assert run.error.startswith(f"{request.tags[FILE_TAG]} changed since the collector found it complete (")
    assert run.error.endswith("now): nothing was loaded; its new content is collected as a new file.")
    assert collector.tick() == []  # its new size: first sight, and the failed run was for another content
    assert remote.names("inbox/crm") == ["people_1.csv"]  # not set aside in error/
    (again,) = collector.tick()
    assert again.run_key != request.run_key
    (second,) = collector.run([again])
    assert second.success, second.error
    assert [r["email"] for r in campaign.rows("recipient", "email", order_by="email")] == ["ann@x.org", "bob@x.org"]
    collector.tick()
    assert remote.names("archive/crm") == [f"people_1.{second.run_id}.csv"]


def test_a_refused_archive_keeps_the_load_reports_once_and_never_imports_twice(campaign, monkeypatch, capfd):
    """The SFTP user may not write in the archive folder: the load stands, the run says the
    file was not archived, and the file is not imported again while it stays in the inbox."""
    remote = Remote(campaign, "sftp", monkeypatch)
    collector = remote_collector(campaign)
    remote.put("inbox/crm/people_1.csv", people_file("ann@x.org;C1;Ann;Lee").encode())
    archive = os.path.join(remote.declaration["root"], "archive", "crm")
    os.makedirs(archive)
    for folder in (archive, os.path.dirname(archive)):
        shutil.chown(folder, user=remote.declaration["user"])
    os.chmod(archive, 0o555)  # the server's side: the test user cannot write there
    collector.tick()
    (request,) = collector.tick()
    (run,) = collector.run([request])
    assert run.success, run.error
    capfd.readouterr()
    assert collector.tick() == [] and collector.tick() == []
    refusals = [line for line in capfd.readouterr().err.splitlines() if "WARNING - people: could not move" in line]
    assert len(refusals) == 1, refusals  # said once, not on every tick
    assert "permission denied" in refusals[0].lower()
    note = campaign.instance.get_run_by_id(run.run_id).tags["campaign/archive"]
    assert note.startswith("not archived: endpoint partner: cannot move ")
    assert remote.names("inbox/crm") == ["people_1.csv"]
    assert len(campaign.rows("recipient", "email")) == 1
    os.chmod(archive, 0o755)  # the permission given: the next tick archives it
    collector.tick()
    assert remote.names("archive/crm") == [f"people_1.{run.run_id}.csv"]
    archived = remote.endpoint.uri(f"archive/crm/people_1.{run.run_id}.csv")
    assert campaign.instance.get_run_by_id(run.run_id).tags["campaign/archive"] == archived


def test_a_multipart_upload_cut_half_way_leaves_no_object_then_delivers_whole(sqlite_campaign, monkeypatch, tmp_path):
    """A 20 MiB file goes up in 8 MiB parts: cut after some of them, the upload is aborted
    and no object shows at the final name; uncut, the object is the file, in 3 parts."""
    remote = Remote(sqlite_campaign, "s3", monkeypatch)
    # Each part may go on a connection of its own: cut each one within its part.
    proxy = CuttingProxy(int(remote.declaration["endpoint_url"].rsplit(":", 1)[1]), cut_after=4 << 20, direction="up", cuts=-1)
    try:
        through(remote, proxy)
        endpoint = remote.declared("partner").with_environment()
        local = tmp_path / "big.csv"
        local.write_bytes(os.urandom(20 << 20))
        with pytest.raises(CampaignError) as cut:
            endpoint.deliver(local, "outbox/big.csv")
        assert str(cut.value).startswith(f"endpoint partner: cannot write {endpoint.uri('outbox/big.csv')} (")
        assert proxy.cut >= 1
        assert not remote.endpoint.exists("outbox/big.csv")
        proxy.allow()
        assert endpoint.deliver(local, "outbox/big.csv") == endpoint.uri("outbox/big.csv")
    finally:
        proxy.close()
    assert remote.get("outbox/big.csv") == local.read_bytes()
    assert remote.endpoint.fs.info(remote.endpoint._absolute("outbox/big.csv"))["ETag"].strip('"').endswith("-3")

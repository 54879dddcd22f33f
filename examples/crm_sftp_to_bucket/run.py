"""The CRM -> Campaign -> warehouse exchange across systems, against local real servers:
the CRM drops an OpenPGP-encrypted recipients file on its SFTP server each night; the
collector (on a real Dagster daemon) takes it once, the run decrypts and imports it, and
the file is archived on the server; in the morning the differential export lands in the
warehouse's bucket (an S3-compatible server), whole, with a `.done` marker.

The servers are the tests' (.ci/test-servers: an sshd of Debian's openssh-server and
SeaweedFS, on 127.0.0.1; started here when they do not answer, which needs root for the
sshd's test user; servers already running are used when CAMPAIGN_TEST_SERVERS names the
folder they were started with). Keys: a fresh OpenPGP key for Campaign, its private half in the
environment as a deployment would set it. Everything else lives under .run/.

    .venv/bin/python examples/crm_sftp_to_bucket/run.py
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
ROOT = HERE / ".run"
IMPORT, EXPORT = "crm_sftp_recipients", "warehouse_bucket_export"
SAMPLES = REPO / "examples" / "crm_to_warehouse" / "files"


def servers() -> None:
    """The local SFTP and S3 servers, their test credentials into this environment (those
    already running when CAMPAIGN_TEST_SERVERS names the folder they were started with)."""
    folder = os.environ.get("CAMPAIGN_TEST_SERVERS") or str(ROOT / "servers")
    done = subprocess.run([str(REPO / ".ci" / "test-servers"), "start", folder],
                          capture_output=True, text=True, env={**os.environ, "WEED": str(BIN / "weed")})
    if done.returncode:
        sys.exit(done.stderr.strip())
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ[name] = shlex.split(value)[0]


def campaign_key() -> str:
    """A fresh OpenPGP key for Campaign: the private half to the environment, the public
    half returned (the CRM encrypts to it)."""
    import gnupg

    home = ROOT / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    gpg = gnupg.GPG(gnupghome=str(home), options=["--pinentry-mode", "loopback"])
    key = gpg.gen_key(gpg.gen_key_input(name_email="campaign@example.com", passphrase="example", key_type="RSA", key_length=2048))
    os.environ["CAMPAIGN_PGP_KEY"] = gpg.export_keys(key.fingerprint, secret=True, passphrase="example")
    os.environ["CAMPAIGN_PGP_PASSPHRASE"] = "example"
    return key.fingerprint


def prepare() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    (ROOT / "dagster").mkdir(parents=True)
    (ROOT / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    servers()
    os.environ["CRM_SFTP_KEY"] = Path(os.environ["CAMPAIGN_TEST_SFTP_KEY_FILE"]).read_text()
    endpoints = {
        "crm_sftp": {
            "type": "sftp", "host": "127.0.0.1", "port": int(os.environ["CAMPAIGN_TEST_SFTP_PORT"]),
            "user": os.environ["CAMPAIGN_TEST_SFTP_USER"], "private_key": {"env": "CRM_SFTP_KEY"},
            "known_host_key": Path(os.environ["CAMPAIGN_TEST_SFTP_HOST_KEY_FILE"]).read_text().strip(),
            "root": f"{os.environ['CAMPAIGN_TEST_SFTP_ROOT']}/crm-example",
        },
        "warehouse": {
            "type": "s3", "endpoint_url": os.environ["CAMPAIGN_TEST_S3_URL"], "bucket": "warehouse-example",
            "region": "us-east-1", "access_key_id": {"env": "CAMPAIGN_TEST_S3_KEY"},
            "secret_access_key": {"env": "CAMPAIGN_TEST_S3_SECRET"},
        },
    }
    (ROOT / "endpoints.yaml").write_text(yaml.safe_dump(endpoints, sort_keys=False))
    os.environ.update(
        DAGSTER_HOME=str(ROOT / "dagster"), CAMPAIGN_DB_URL=f"sqlite:///{ROOT / 'campaign.db'}",
        CAMPAIGN_DATA_DIR=str(ROOT / "data"), CAMPAIGN_TEMPLATES_DIR=str(HERE / "job_templates"),
        CAMPAIGN_ENDPOINTS=str(ROOT / "endpoints.yaml"),
    )


def wait_for(what: str, condition, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}; see {ROOT / 'daemon.log'}")
        time.sleep(0.5)


def why(instance, run) -> str:
    """The sentence a failed run ended with."""
    for record in instance.all_logs(run.run_id):
        event = record.dagster_event
        if event is not None and event.is_step_failure:
            data = event.step_failure_data
            return data.user_failure_data.description if data.user_failure_data else data.error.message
    return "see its events in the UI"


def main() -> None:
    prepare()
    fingerprint = campaign_key()
    import dagster as dg
    import gnupg

    from resources.endpoint_file import load_endpoints

    declared = load_endpoints(ROOT / "endpoints.yaml")
    sftp, bucket = declared.get("crm_sftp").with_environment(), declared.get("warehouse").with_environment()
    if not bucket.fs.exists("warehouse-example"):
        bucket.fs.mkdir("warehouse-example")
    crm = gnupg.GPG(gnupghome=str(ROOT / "gnupg"))
    instance = dg.DagsterInstance.get()

    def finished(job: str) -> list[dg.DagsterRun]:
        return [r for r in instance.get_runs(dg.RunsFilter(job_name=job)) if r.is_finished]

    log = (ROOT / "daemon.log").open("w")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
                              cwd=REPO, env=os.environ, stdout=log, stderr=subprocess.STDOUT)
    try:
        for night, sample in enumerate(sorted(SAMPLES.glob("recipients_*.csv")), start=1):
            name = f"inbox/crm/{sample.name}.gpg"
            print(f"night {night}: the CRM drops {sftp.uri(name)} (encrypted to Campaign's key)")
            sealed = crm.encrypt(sample.read_bytes(), [fingerprint], always_trust=True, armor=False)
            sftp.fs.makedirs(sftp._absolute("inbox/crm"), exist_ok=True)
            sftp.fs.pipe_file(sftp._absolute(name), sealed.data)
            wait_for(f"{name} to be collected and archived",
                     lambda: len(finished(IMPORT)) == night and not sftp.exists(name))
            run = max(finished(IMPORT), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
            if run.status != dg.DagsterRunStatus.SUCCESS:
                sys.exit(f"the collector's run {run.run_id} failed: {why(instance, run)}")
            print(f"  collector run {run.run_id[:8]}: {run.tags.get('campaign/status')}; "
                  f"archived as {[p for p in sftp.glob('archive/crm/*') if run.run_id in p.path][0].path} on the server")
            print("morning: the warehouse export (its schedule: weekdays 06:00 Europe/Paris)")
            subprocess.run([str(BIN / "dagster"), "job", "launch", "-j", EXPORT, "-w", str(REPO / "workspace.yaml")],
                           cwd=REPO, env=os.environ, check=True, capture_output=True)
            wait_for("the export", lambda: len(finished(EXPORT)) == night)
            export = max(finished(EXPORT), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
            if export.status != dg.DagsterRunStatus.SUCCESS:
                sys.exit(f"the export run {export.run_id} failed: {why(instance, export)}")
            (delivered,) = [f for f in bucket.glob("recipients/*.csv") if export.run_id in f.path]
            print(f"  export run {export.run_id[:8]}: {export.tags.get('campaign/status')}; {bucket.uri(delivered.path)} "
                  f"(+ .done: {bucket.exists(delivered.path + '.done')}):")
            print("    " + bucket.fs.cat_file(bucket._absolute(delivered.path)).decode().rstrip().replace("\n", "\n    "))
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()
        # Only the servers this run started (their pid files are in its folder).
        subprocess.run([str(REPO / ".ci" / "test-servers"), "stop", str(ROOT / "servers")], check=False)


if __name__ == "__main__":
    main()

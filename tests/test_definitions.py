"""The code location: one job per template, flat pre-filled launch config, assets, secrets."""

from __future__ import annotations

import dagster as dg
import pytest

from campaign_pipelines.code_location import build_definitions
from tests.helpers import people_file, people_template


def test_one_job_per_valid_template_and_one_that_says_why_per_broken_one(sqlite_campaign):
    sqlite_campaign.template(people_template(name="crm_people"))
    sqlite_campaign.template(people_template(name="broken").replace("recipient", "nothing"), name="broken")
    sqlite_campaign.template("name: [unclosed\n", name="Not Even YAML")
    defs = build_definitions(sqlite_campaign.settings)
    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    assert {"new_text_import", "import_recipients", "import_denylist", "crm_people"} <= set(jobs)
    job = jobs["crm_people"]
    assert job.description.startswith("People")
    assert job.tags["campaign/table"] == "recipient" and job.tags["campaign/template"] == "crm_people"
    assert "campaign/load_error" not in job.tags

    # The broken templates: a job of their name (or their file's) that says why, and fails so.
    broken, unparsable = jobs["broken"], jobs["not_even_yaml"]
    assert broken.tags["campaign/load_error"] == "template" and not broken.asset_layer.selected_asset_keys
    assert broken.description.startswith("This job template cannot load: ")
    assert "broken.yaml: target.schema: unknown schema 'nothing'" in broken.description
    assert "Not Even YAML.yaml: line 2 is not valid YAML" in unparsable.description
    result = broken.execute_in_process(raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith(
        "the job template broken cannot load: "
    )


def test_a_broken_template_that_takes_a_used_name_shows_under_its_file_name(sqlite_campaign):
    sqlite_campaign.template(people_template(name="import_recipients"), name="my_copy")
    jobs = {job.name: job for job in build_definitions(sqlite_campaign.settings).resolve_all_job_defs()}
    assert "campaign/load_error" not in jobs["import_recipients"].tags  # the built-in stays
    assert "is a built-in template's name; choose another" in jobs["my_copy"].description


def test_launchpad_config_is_flat_and_prefilled(sqlite_campaign):
    defs = build_definitions(sqlite_campaign.settings)
    job = defs.resolve_job_def("import_recipients")
    fields = job.run_config_schema.config_type.fields
    assert set(fields) >= {"file", "delimiter", "quote", "encoding", "on_error", "max_rejects", "limit", "skip_lines"}
    assert fields["file"].default_value == "inbox/recipients.csv"
    assert fields["delimiter"].default_value == ";"
    assert fields["on_error"].default_value == "reject_line"
    assert "ops" not in fields


def test_the_first_step_holds_its_template_and_takes_only_the_launch_keys(sqlite_campaign):
    """The template is bound when the definitions are built: its graph's first step is made
    for it and its config is the launch keys, never the template as text to parse again."""
    sqlite_campaign.template(people_template(name="crm_people"))
    job = build_definitions(sqlite_campaign.settings).resolve_job_def("crm_people")
    first = job.graph.node_named("crm_people_steps").definition.node_named("read_file").definition
    assert first.name == "crm_people_read_file"
    config = job.run_config_schema.config_type.fields  # the flat launch keys, mapped to it
    assert "template" not in config and "overrides" not in config
    sqlite_campaign.file("inbox/other.csv", people_file("a@example.com;1;Ann;Lee"))
    result = sqlite_campaign.run("crm_people", file="inbox/other.csv")
    assert result.success, result.error
    assert result.dagster.output_for_node("crm_people_steps.read_file").file.name == "other.csv"


def test_assets_for_tables_and_rejects(sqlite_campaign):
    defs = build_definitions(sqlite_campaign.settings)
    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert {"campaign/recipient", "campaign/recipient_list", "campaign/service", "rejects/import_recipients"} <= keys


def test_database_url_comes_from_the_environment_unseen(sqlite_campaign):
    sqlite_campaign.template(people_template(name="crm_people"))
    sqlite_campaign.file("inbox/people.csv", people_file("ann@x.org;C1;Ann;Lee"))
    defs = build_definitions(sqlite_campaign.settings)
    job = defs.resolve_job_def("crm_people")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    # Read in the run from CAMPAIGN_DB_URL: neither the definitions nor the run hold it.
    assert sqlite_campaign.db_url not in dg.serialize_value(job.get_job_snapshot())
    assert sqlite_campaign.db_url not in repr(result.dagster_run.run_config)


@pytest.mark.parametrize("job_name", ["import_recipients", "crm_daily", "__ASSET_JOB"])
@pytest.mark.parametrize(
    ("run_config", "key"),
    [
        ({"resources": {"file_store": {"config": {"data_dir": "/tmp/elsewhere"}}}}, "data_dir"),
        ({"resources": {"campaign_db": {"config": {"url": "sqlite:////tmp/other.db"}}}}, "url"),
        ({"resources": {"work_io_manager": {"config": {"data_dir": "/tmp/elsewhere"}}}}, "data_dir"),
        ({"execution": {"config": {"retries": {"disabled": {}}}}}, "retries"),
    ],
)
def test_a_run_config_cannot_move_a_deployment_setting(sqlite_campaign, job_name, run_config, key):
    """Data folder, database, executor: fixed by the deployment. A run config that sets one
    is refused before any run is created (and the Launchpad offers none of them)."""
    daily = {"daily": {"start": "2025-01-01", "path": "inbox/people_{date:%Y%m%d}.csv"}}
    sqlite_campaign.template(people_template(name="crm_daily", partitions=daily), name="crm_daily")
    defs = build_definitions(sqlite_campaign.settings)
    job = defs.resolve_implicit_global_asset_job_def() if job_name == "__ASSET_JOB" else defs.resolve_job_def(job_name)
    fields = job.run_config_schema.config_type.fields
    for section in ("resources", "execution"):
        if section in fields:  # a partitioned job and the asset job show them: with nothing to set
            assert "data_dir" not in repr(fields[section].config_type.fields)
    if job_name == "crm_daily":
        run_config = {**run_config, "ops": {"crm_daily_steps": {"config": {"file": "inbox/people_20250101.csv"}}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match=rf'unexpected config entry "{key}"|"{"resources" if "resources" in run_config else "execution"}"'):
        dg.validate_run_config(job, run_config)


def test_a_data_schema_that_cannot_load_shows_on_its_tables_asset(sqlite_campaign):
    """A new table's broken file: a placeholder asset of its name says why. An extension's:
    the table it extends says so. The other tables and templates load."""
    sqlite_campaign.schema("name: card\nfields:\n  - {name: tag, kind: string, nulable: true}\n", "card")
    sqlite_campaign.schema("extends: recipient\nfields:\n  - {name: tier, kind: money}\n", "tier")
    defs = build_definitions(sqlite_campaign.settings)
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    card = specs["campaign/card"]
    assert card.description.startswith("This data schema cannot load: ")
    assert "card.yaml: fields[0].nulable: unknown key (did you mean 'nullable'?)" in card.description
    assert "card.yaml" in card.metadata["load_error_files"].value
    recipient = specs["campaign/recipient"]
    assert "A data schema of this table cannot load: " in recipient.description
    assert "tier.yaml: fields[0]" in recipient.metadata["load_errors"].value
    assert "dagster/column_schema" in recipient.metadata and "import_recipients" in {j.name for j in defs.resolve_all_job_defs()}


def test_a_run_of_the_asset_job_takes_its_templates_tags(sqlite_campaign):
    """Materialize on an asset page runs Dagster's asset job: its first step gives the run
    the tags the template's job gives its runs. A run of two templates' assets at once
    (Materialize all on a group) is refused before anything is read."""
    for name in ("people_a", "people_b"):
        sqlite_campaign.template(people_template(name=name, source={"path": f"inbox/{name}.csv"}))
        sqlite_campaign.file(f"inbox/{name}.csv", people_file(f"{name}@x.org;{name};Ann;Lee"))
    asset_job = build_definitions(sqlite_campaign.settings).resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey([group, "people_a"]) for group in ("imports", "rejects")]
    with dg.instance_for_test() as instance:
        one = asset_job.execute_in_process(instance=instance, asset_selection=keys)
        both = asset_job.execute_in_process(
            instance=instance, asset_selection=[*keys, *(dg.AssetKey([g, "people_b"]) for g in ("imports", "rejects"))],
            raise_on_error=False,
        )
        runs = {run.run_id: run for run in instance.get_runs()}
        failures = {e.step_key: e.dagster_event.step_failure_data.user_failure_data.description
                    for e in instance.all_logs(both.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)}
    assert one.success
    assert {k: v for k, v in runs[one.run_id].tags.items() if k.startswith("campaign/")} == {
        "campaign/template": "people_a", "campaign/kind": "import", "campaign/table": "recipient", "campaign/status": "finished",
    }
    assert not both.success and runs[both.run_id].tags["campaign/status"] == "failed"
    sentence = ("this run holds the assets of 2 job templates (people_a, people_b); a run loads or exports one template: "
                "launch each from its job or its own asset page. Nothing was read or written.")
    assert failures == {"people_a_steps.read_file": sentence, "people_b_steps.read_file": sentence}
    assert [r["email"] for r in sqlite_campaign.rows("recipient", "email")] == ["people_a@x.org"]  # the first run's only

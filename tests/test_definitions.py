"""The code location: one job per template, flat pre-filled launch config, assets, secrets."""

from __future__ import annotations

import dagster as dg

from campaign_pipelines.definitions import build_definitions
from tests.helpers import people_template


def test_one_job_per_valid_template(sqlite_campaign):
    sqlite_campaign.template(people_template(name="crm_people"))
    sqlite_campaign.template(people_template(name="broken").replace("recipient", "nothing"), name="broken")
    defs = build_definitions(sqlite_campaign.settings)
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"new_text_import", "import_recipients", "import_denylist", "crm_people"} <= jobs
    assert "broken" not in jobs
    job = defs.resolve_job_def("crm_people")
    assert job.description.startswith("People")
    assert job.tags["campaign/table"] == "recipient" and job.tags["campaign/template"] == "crm_people"


def test_launchpad_config_is_flat_and_prefilled(sqlite_campaign):
    defs = build_definitions(sqlite_campaign.settings)
    job = defs.resolve_job_def("import_recipients")
    fields = job.run_config_schema.config_type.fields
    assert set(fields) >= {"file", "delimiter", "quote", "encoding", "on_error", "max_rejects", "limit", "skip_lines"}
    assert fields["file"].default_value == "inbox/recipients.csv"
    assert fields["delimiter"].default_value == ";"
    assert fields["on_error"].default_value == "reject_line"
    assert "ops" not in fields


def test_assets_for_tables_and_rejects(sqlite_campaign):
    defs = build_definitions(sqlite_campaign.settings)
    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert {"campaign/recipient", "campaign/recipient_list", "campaign/service", "rejects/import_recipients"} <= keys


def test_database_url_comes_from_the_environment_unseen(sqlite_campaign):
    defs = build_definitions(sqlite_campaign.settings)
    resource = defs.resources["campaign_db"]
    # The URL is an EnvVar reference, resolved in the run: the Launchpad never shows it.
    assert isinstance(resource.url, dg.EnvVar) or "CAMPAIGN_DB_URL" in repr(resource)
    assert sqlite_campaign.db_url not in repr(resource)

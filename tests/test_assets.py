"""The exchanges as assets: lineage, the import's checks, the rejects as pandas through
their IO manager, Materialize from the asset (no job config), and the stored-rows check
of a table, on both databases."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from campaign_pipelines.checks import stored_row_faults
from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.templates import load_catalog
from tests.helpers import export_template, people_file, people_template

CLEAN = ("ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray")
# Line 3 (the second data line) has no e-mail and no CRM id: no key to reconcile on.
WITH_REJECT = ("ann@x.org;C1;Ann;Lee", ";;No;Key", "cid@x.org;C3;Cid;Roy")


def key(*path: str) -> dg.AssetKey:
    return dg.AssetKey(list(path))


def evaluations(campaign, run_id: str) -> list[dg.AssetCheckEvaluation]:
    """The check evaluations the instance stored for a run (what the UI shows)."""
    logs = campaign.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [e.dagster_event.event_specific_data for e in logs]


def checks_of(campaign, result, template: str = "people") -> dict[str, tuple[bool, dg.AssetCheckSeverity]]:
    return {
        e.check_name: (e.passed, e.severity)
        for e in evaluations(campaign, result.run_id)
        if e.asset_key == key("imports", template)
    }


def test_the_lineage_runs_from_the_inbox_file_to_the_outbox_file(sqlite_campaign):
    campaign = sqlite_campaign
    campaign.template(people_template())
    campaign.template(people_template(name="crm_people"))
    campaign.template(export_template())
    graph = build_definitions(campaign.settings).resolve_asset_graph()

    def parents(*path: str) -> set[dg.AssetKey]:
        return set(graph.get(key(*path)).parent_keys)

    assert parents("imports", "people") == {key("inbox", "people")}
    assert key("rejects", "people") in graph.get_all_asset_keys()
    # A table is downstream of every import writing it.
    writers = parents("campaign", "recipient")
    assert {key("imports", "people"), key("imports", "crm_people")} <= writers  # and the packaged imports
    assert all(k.path[0] == "imports" for k in writers)
    assert parents("exports", "out") == {key("campaign", "recipient")}
    assert parents("outbox", "out") == {key("exports", "out")}
    # The import materializes its asset and its rejects; the export its own.
    assert graph.get(key("imports", "people")).is_materializable
    assert graph.get(key("exports", "out")).is_materializable
    assert graph.get(key("inbox", "people")).is_observable


def test_a_clean_run_passes_both_checks_and_a_reject_warns(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file(*CLEAN))
    result = campaign.run("people")
    assert checks_of(campaign, result) == {"lines_accounted": (True, dg.AssetCheckSeverity.ERROR),
                                 "reject_rate": (True, dg.AssetCheckSeverity.WARN)}

    campaign.file("inbox/people.csv", people_file(*WITH_REJECT))
    result = campaign.run("people")
    assert result.success and result.counts["rows_rejected"] == 1
    assert checks_of(campaign, result) == {"lines_accounted": (True, dg.AssetCheckSeverity.ERROR),
                                 "reject_rate": (False, dg.AssetCheckSeverity.WARN)}
    (rate,) = [e for e in evaluations(campaign, result.run_id) if e.check_name == "reject_rate"]
    assert rate.metadata["reject_rate"].value == pytest.approx(1 / 3)
    warnings = [e.user_message for e in campaign.instance.all_logs(result.run_id) if e.level == 30]  # logging.WARNING
    assert any(m.startswith("1 of 3 lines rejected (33.33%)") for m in warnings), warnings
    # The asset's metadata holds the rate, so Dagster plots it run after run.
    materialization = campaign.instance.get_latest_materialization_event(key("imports", "people")).asset_materialization
    assert materialization.metadata["reject_rate"].value == pytest.approx(1 / 3)


def test_a_reject_rate_under_the_templates_threshold_passes(sqlite_campaign):
    campaign = sqlite_campaign
    campaign.template(people_template(errors={"warn_reject_rate": 0.5}))
    campaign.file("inbox/people.csv", people_file(*WITH_REJECT))
    assert checks_of(campaign, campaign.run("people"))["reject_rate"] == (True, dg.AssetCheckSeverity.WARN)


@pytest.mark.parametrize(
    ("errors", "reason"),
    [({"max_rejects": 0}, "more than errors.max_rejects (0)"),
     ({"max_reject_rate": 0.2}, "1 of 3 lines rejected (33.3%), more than errors.max_reject_rate (20.0%)")],
)
def test_a_run_failed_by_its_reject_policy_is_an_error_on_the_check_and_its_lines_are_accounted(campaign, errors, reason):
    campaign.template(people_template(errors=errors))
    campaign.file("inbox/people.csv", people_file(*WITH_REJECT))
    before = campaign.snapshot()
    result = campaign.run("people")
    assert not result.success and reason in result.error
    assert campaign.snapshot() == before
    accounted, rate = evaluations(campaign, result.run_id)
    assert (rate.check_name, rate.passed, rate.severity) == ("reject_rate", False, dg.AssetCheckSeverity.ERROR)
    # Every line was rejected or held back, nothing written: the counts hold, the check passes.
    assert (accounted.check_name, accounted.passed) == ("lines_accounted", True)
    assert accounted.metadata["rows_read"].value == 3 and accounted.metadata["rows_written"].value == 0
    # The failed run's rejects are the asset's value all the same.
    defs = build_definitions(campaign.settings)
    rejects = defs.load_asset_value(["rejects", "people"], instance=campaign.instance)
    assert rejects["line"].tolist() == [3] and rejects.attrs["run_id"] == result.run_id


def test_the_rejects_load_as_a_pandas_dataframe(campaign):
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file(*WITH_REJECT))
    result = campaign.run("people")
    defs = build_definitions(campaign.settings)
    rejects = defs.load_asset_value(["rejects", "people"], instance=campaign.instance)
    assert isinstance(rejects, pd.DataFrame)
    assert list(rejects.columns) == ["line", "column", "reason", "text"]
    assert rejects["line"].tolist() == [3]
    assert rejects["text"].tolist() == [";;No;Key"]
    assert rejects.attrs["run_id"] == result.run_id

    # A clean run replaces them with none.
    campaign.file("inbox/people.csv", people_file(*CLEAN))
    campaign.run("people")
    assert defs.load_asset_value(["rejects", "people"], instance=campaign.instance).empty


def test_a_users_asset_takes_the_rejects_as_its_input(sqlite_campaign):
    campaign = sqlite_campaign
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file(*WITH_REJECT))
    campaign.run("people")
    defs = build_definitions(campaign.settings)

    @dg.asset(ins={"rejects": dg.AssetIn(key=["rejects", "people"])})
    def reject_report(rejects: pd.DataFrame) -> dict[str, int]:
        return {"lines": len(rejects)}

    rejects_asset = defs.resolve_assets_def(key("rejects", "people"))
    # The rejects asset comes with its IO manager bound, as the code location defines it.
    result = dg.materialize([reject_report, rejects_asset], selection=[reject_report], instance=campaign.instance)
    assert result.output_for_node("reject_report") == {"lines": 1}


def test_no_rejects_stored_yet_is_one_sentence(sqlite_campaign):
    campaign = sqlite_campaign
    campaign.template(people_template())
    defs = build_definitions(campaign.settings)
    with pytest.raises(FileNotFoundError, match=r"^rejects/people: no import run has stored its rejects yet"):
        defs.load_asset_value(["rejects", "people"], instance=campaign.instance)


def test_materialize_from_the_asset_needs_no_config(campaign):
    """What the asset page's Materialize does: the implicit asset job, with the graph's
    launch keys defaulted from the template."""
    campaign.template(people_template())
    campaign.file("inbox/people.csv", people_file(*CLEAN))
    defs = build_definitions(campaign.settings)
    job = defs.resolve_implicit_job_def_def_for_assets([key("imports", "people")])
    result = job.execute_in_process(instance=campaign.instance, asset_selection=[key("imports", "people"), key("rejects", "people")])
    assert result.success
    assert [r["email"] for r in campaign.rows("recipient", "email", order_by="email")] == ["ann@x.org", "bob@x.org"]


def test_a_partitioned_import_materializes_its_days(sqlite_campaign):
    campaign = sqlite_campaign
    daily = {"daily": {"start": "2025-01-01", "end": "2025-01-04", "path": "inbox/people_{date:%Y%m%d}.csv"}}
    campaign.template(people_template(partitions=daily))
    campaign.file("inbox/people_20250101.csv", people_file(CLEAN[0]))
    campaign.file("inbox/people_20250102.csv", people_file(CLEAN[1]))
    for day in ("2025-01-01", "2025-01-02"):
        assert campaign.run("people", partition_key=day).success
    materialized = campaign.instance.get_materialized_partitions(key("imports", "people"))
    assert materialized == {"2025-01-01", "2025-01-02"}
    assert [r["email"] for r in campaign.rows("recipient", "email", order_by="email")] == ["ann@x.org", "bob@x.org"]


def test_a_collector_on_a_partitioned_template_is_a_template_error(sqlite_campaign):
    campaign = sqlite_campaign
    daily = {"daily": {"start": "2025-01-01", "path": "inbox/people_{date:%Y%m%d}.csv"}}
    campaign.template(people_template(partitions=daily, collector={"watch": "inbox/people_*.csv"}))
    catalog = load_catalog(campaign.settings.templates_dir, campaign.model)
    assert "people" not in catalog.templates
    assert any("collector: a daily partitioned import reads its day's file" in e for e in catalog.errors)


STORE = """\
name: store
label: Stores
fields:
  - {name: code, kind: string, max_length: 8, nullable: false}
  - {name: region, kind: string, max_length: 8,
     checks: [{check: isin, allowed_values: [north, south], error: is not a region}]}
  - {name: size, kind: integer, checks: [{check: ge, min_value: 0, error: is negative}]}
  - {name: motto, kind: string, checks: [{check: str_matches, pattern: "^[A-Z]", error: starts lower-case}]}
key: [code]
"""


def test_the_stored_rows_check_counts_rows_breaking_the_tables_rules(campaign):
    campaign.schema(STORE, "store")
    defs = build_definitions(campaign.settings)
    check_job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_check_selection={dg.AssetCheckKey(key("campaign", "store"), "stored_rows")}, asset_selection=set()
    )
    result = check_job.execute_in_process(instance=campaign.instance)
    (clean,) = result.get_asset_check_evaluations()
    assert clean.passed and clean.metadata["rows_breaking_rules"].value == 0
    # Rows written behind the imports' back: the database takes them, the check does not.
    table = campaign.model.table("store").table
    with campaign.engine.begin() as conn:
        now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        rows = [{"code": "A", "region": "east", "size": 3}, {"code": "B", "region": "north", "size": -1}]
        conn.execute(sa.insert(table), [{**row, "created_at": now, "updated_at": now} for row in rows])
    result = check_job.execute_in_process(instance=campaign.instance)
    (broken,) = result.get_asset_check_evaluations()
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.ERROR
    assert "1 row(s): region: is not a region" in broken.description
    assert "1 row(s): size: is negative" in broken.description
    assert broken.metadata["not_checkable_in_sql"].value == "motto: str_matches"
    with campaign.engine.connect() as conn:
        faults, _ = stored_row_faults(conn, campaign.model.table("store"), campaign.model)
    assert faults["(code) held by several rows"] == 0 and faults["code is empty"] == 0

"""Job templates as Dagster Components: the dg project of examples/components (the shop's
templates folder and data model, and one template placed in its defs folder) and this
repository's own project, through the real `dg` CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from campaign_pipelines.code_location import build_definitions
from campaign_pipelines.settings import Settings
from campaign_pipelines.templates.catalog import parse_data
from tests.test_definitions_snapshot import EXAMPLES, inventory

PROJECT = EXAMPLES / "components"
PLACED = PROJECT / "shop_defs" / "defs" / "shop_gold_customers" / "defs.yaml"
REPOSITORY = Path(__file__).resolve().parent.parent


def dg_cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The `dg` installed beside this Python, on the project at `cwd`, with no CAMPAIGN_*
    variable but a data folder of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(cwd),
        DAGSTER_HOME=str(home),
        CAMPAIGN_DATA_DIR=str(home / "data"),
    )
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.run([str(Path(bin_dir) / "dg"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def project_copy(tmp_path: Path) -> Path:
    """The example project under tmp_path, its folders' paths still pointing at the shop's."""
    copy = tmp_path / "components"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    exchanges = copy / "shop_defs" / "defs" / "exchanges" / "defs.yaml"
    exchanges.write_text(exchanges.read_text().replace("../shop/", f"{EXAMPLES / 'shop'}/"))
    return copy


def shop_settings(tmp_path: Path) -> Settings:
    return Settings(
        db_url=None, data_dir=tmp_path / "data",
        templates_dir=EXAMPLES / "shop" / "job_templates", schemas_dir=EXAMPLES / "shop" / "data_schemas",
    )


def test_the_project_holds_the_folders_templates_and_the_placed_one(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("CAMPAIGN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CAMPAIGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.syspath_prepend(str(PROJECT))
    found = inventory(dg.load_from_defs_folder(path_within_project=PROJECT))
    shop = inventory(build_definitions(shop_settings(tmp_path)))
    # The folder's deployment, unchanged, and the placed template's job and assets besides.
    assert set(found["jobs"]) == set(shop["jobs"]) | {"shop_gold_customers"}
    assert found["jobs"]["shop_gold_customers"] == {
        "tags": {"campaign/kind": "export", "campaign/source": "recipient", "campaign/template": "shop_gold_customers"},
        "assets": ["exports/shop_gold_customers"],
    }
    assert set(found["assets"]) == set(shop["assets"]) | {"exports/shop_gold_customers", "outbox/shop_gold_customers"}
    assert (found["checks"], found["schedules"], found["sensors"], found["resources"]) == (
        shop["checks"], shop["schedules"], shop["sensors"], shop["resources"]
    )


def test_dg_list_defs_lists_every_templates_job_assets_checks_schedule_and_sensor(tmp_path):
    done = dg_cli("list", "defs", "--json", cwd=PROJECT, home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    shop = inventory(build_definitions(shop_settings(tmp_path)))
    assert {j["name"] for j in listed["jobs"]} == set(shop["jobs"]) | {"shop_gold_customers"}
    assert {a["asset_key"] for a in listed["assets"]} == set(shop["assets"]) | {"exports/shop_gold_customers", "outbox/shop_gold_customers"}
    assert {f"{c['asset_key']}:{c['name']}" for c in listed["asset_checks"]} == set(shop["checks"])
    assert {s["name"] for s in listed["schedules"]} == set(shop["schedules"])
    assert {s["name"] for s in listed["sensors"]} == set(shop["sensors"])
    assert {r["name"] for r in listed["resources"]} >= set(shop["resources"])


def test_dg_check_yaml_points_at_a_templates_unknown_key_with_its_file_and_line(tmp_path):
    project = project_copy(tmp_path)
    placed = project / PLACED.relative_to(PROJECT)
    text = placed.read_text()
    line = text.splitlines().index("    order_by: [email]") + 1
    placed.write_text(text.replace("    order_by: [email]", "    order_bye: [email]"))
    done = dg_cli("check", "yaml", str(placed.parent), cwd=project, home=tmp_path / "home")
    assert done.returncode == 1
    assert f"{placed}:{line} - campaign_pipelines.components.JobTemplate attributes.source.order_bye" in done.stdout
    assert "('order_bye' was unexpected)" in done.stdout
    assert dg_cli("check", "yaml", cwd=PROJECT, home=tmp_path / "home").returncode == 0


def test_a_broken_placed_template_skips_alone_and_says_why(tmp_path):
    project = project_copy(tmp_path)
    placed = project / PLACED.relative_to(PROJECT)
    placed.write_text(placed.read_text().replace("schema: recipient", "schema: recipients"))
    done = dg_cli("list", "defs", "--json", cwd=project, home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    jobs = {j["name"]: j for j in json.loads(done.stdout)["jobs"]}
    assert {"shop_customers", "shop_purchases", "shop_month_purchases"} <= set(jobs)
    assert jobs["shop_gold_customers"]["description"].startswith(
        f"This job template cannot load: {placed}: source.schema: unknown schema 'recipients'"
    )
    # One without a name goes by its folder's.
    nameless = project / "shop_defs" / "defs" / "nameless" / "defs.yaml"
    nameless.parent.mkdir()
    nameless.write_text("type: campaign_pipelines.components.JobTemplate\nattributes: {kind: export}\n")
    listed = dg_cli("list", "defs", "--json", cwd=project, home=tmp_path / "home")
    jobs = {j["name"]: j for j in json.loads(listed.stdout)["jobs"]}
    assert jobs["nameless"]["description"].startswith(f"This job template cannot load: {nameless}: ")


def test_dg_scaffold_defs_writes_a_template_draft_that_loads(tmp_path):
    project = project_copy(tmp_path)
    done = dg_cli(
        "scaffold", "defs", "campaign_pipelines.components.JobTemplate", "weekly_export", "--kind", "export",
        cwd=project, home=tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    written = project / "shop_defs" / "defs" / "weekly_export" / "defs.yaml"
    document = yaml.safe_load(written.read_text())
    assert document["type"] == "campaign_pipelines.components.JobTemplate"
    template = parse_data(document["attributes"], str(written), shop_settings(tmp_path).data_model())
    assert (template.name, template.kind, template.source.table) == ("weekly_export", "export", "recipient")
    assert dg_cli("check", "yaml", str(written.parent), cwd=project, home=tmp_path / "home").returncode == 0
    listed = dg_cli("list", "defs", "--json", cwd=project, home=tmp_path / "home")
    assert "weekly_export" in {j["name"] for j in json.loads(listed.stdout)["jobs"]}


def test_a_placed_template_without_the_exchanges_component_is_refused_with_a_sentence(tmp_path):
    project = project_copy(tmp_path)
    shutil.rmtree(project / "shop_defs" / "defs" / "exchanges")
    done = dg_cli("list", "defs", "--json", cwd=project, home=tmp_path / "home")
    assert done.returncode != 0
    assert "a job template placed in a defs folder is built by the project's campaign_pipelines.components.JobTemplates" in done.stderr


def test_this_repository_is_a_dg_project_of_the_built_in_templates(tmp_path):
    done = dg_cli("list", "defs", "--json", cwd=REPOSITORY, home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    jobs = {j["name"] for j in json.loads(done.stdout)["jobs"]}
    assert {"import_recipients", "import_denylist", "new_text_import", "new_text_export", "campaign_cleanup"} <= jobs
    assert dg_cli("check", "yaml", cwd=REPOSITORY, home=tmp_path / "home").returncode == 0
    components = dg_cli("list", "components", "--json", cwd=REPOSITORY, home=tmp_path / "home")
    types = {c["key"] for c in json.loads(components.stdout)["items"]}
    assert {"campaign_pipelines.components.JobTemplates", "campaign_pipelines.components.JobTemplate"} <= types

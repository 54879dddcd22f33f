"""`templates new --from-file` and `templates preview` for JSON Lines, JSON documents and
Parquet (issue 28, item 7): the format recognised, a JSON document's records found by
key path, nested keys matched to fields by their last step, typed Parquet columns mapped
without a format; the draft previews and runs."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from campaign_pipelines.detect import detect
from tests.test_templates_new import run_cli

PEOPLE = [
    {"contact": {"email": "ann@x.org", "first_name": "Ann"}, "nom": "Lee", "seen": "2024-03-05T10:15:30Z", "dob": "17/05/1990"},
    {"contact": {"email": "bob@x.org", "first_name": "Bob"}, "nom": "Ray", "seen": "2024-03-06T08:00:00+01:00", "dob": "02/11/1985"},
]


PEOPLE_XML = """<?xml version="1.0"?>
<export xmlns="urn:crm" xmlns:x="urn:extra">
  <meta generated="2024-03-05"><count>2</count></meta>
  <people>
    <person x:id="1"><contact><email>ann@x.org</email></contact><prenom>Ann</prenom><dob>1990-05-17</dob></person>
    <person x:id="2"><contact><email>bob@x.org</email></contact><prenom>Bob</prenom><dob>1985-11-02</dob></person>
  </people>
</export>
"""


@pytest.fixture
def files(sqlite_campaign):
    sqlite_campaign.file("inbox/people.jsonl", "".join(json.dumps(p) + "\n" for p in PEOPLE))
    sqlite_campaign.file("inbox/people.json", json.dumps({"meta": {"n": 2}, "data": {"people": PEOPLE}}))
    table = pa.table({
        "Email": ["ann@x.org", "bob@x.org"],
        "Birth date": pa.array([dt.date(1990, 5, 17), dt.date(1985, 11, 2)]),
        "spend": pa.array([decimal.Decimal("19.90"), None], pa.decimal128(10, 2)),
    })
    (sqlite_campaign.data_dir / "inbox").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, sqlite_campaign.data_dir / "inbox" / "people.data")  # no telling suffix: the magic says Parquet
    book = openpyxl.Workbook()
    book.active.title = "Export"
    sheet = book.active
    sheet["B3"], sheet["C3"], sheet["D3"] = "E-mail", "Date of birth", "Prénom"  # two empty rows and a column above it
    for i, (email, born, first) in enumerate([("ann@x.org", dt.date(1990, 5, 17), "Ann"), ("bob@x.org", dt.date(1985, 11, 2), "Bob")]):
        sheet.cell(4 + i, 2, email), sheet.cell(4 + i, 3, born), sheet.cell(4 + i, 4, first)
    book.save(sqlite_campaign.data_dir / "inbox" / "people.xlsx")
    sqlite_campaign.file("inbox/people.xml", PEOPLE_XML)
    return sqlite_campaign


def test_json_lines_are_recognised_and_nested_keys_map_by_their_last_step(files):
    found = detect(files.data_dir / "inbox" / "people.jsonl", "recipient")
    assert (found.format, found.records) == ("jsonl", None)
    assert found.titles == ["contact.email", "contact.first_name", "nom", "seen", "dob"]
    assert found.mapping == {"contact.email": "email", "contact.first_name": "first_name", "nom": "last_name", "dob": "birth_date"}
    assert found.formats == {"dob": "%d/%m/%Y"}


def test_a_json_documents_records_are_found_by_key_path(files):
    found = detect(files.data_dir / "inbox" / "people.json", "recipient")
    assert (found.format, found.records) == ("json", "data.people")
    assert found.rows[1][:2] == ["bob@x.org", "Bob"]


def test_a_parquet_schema_maps_typed_columns_without_formats(files):
    found = detect(files.data_dir / "inbox" / "people.data", "recipient")
    assert found.format == "parquet"
    assert found.mapping == {"Email": "email", "Birth date": "birth_date"} and found.formats == {}
    assert found.unmapped == ["spend"]


@pytest.mark.parametrize(
    ("name", "file", "source"),
    [
        ("from_jsonl", "inbox/people.jsonl", {"path": "inbox/people.jsonl", "format": "jsonl"}),
        ("from_json", "inbox/people.json", {"path": "inbox/people.json", "format": "json", "records": "data.people"}),
        ("from_parquet", "inbox/people.data", {"path": "inbox/people.data", "format": "parquet"}),
        ("from_xml", "inbox/people.xml", {"path": "inbox/people.xml", "format": "xml", "records": "n1:export/n1:people/n1:person",
                                          "namespaces": {"n1": "urn:crm", "n2": "urn:extra"}}),
        ("from_xlsx", "inbox/people.xlsx", {"path": "inbox/people.xlsx", "format": "xlsx", "sheet": "Export", "skip_lines": 2}),
    ],
)
def test_the_draft_previews_and_runs(files, capsys, name, file, source):
    code, out, err = run_cli(capsys, "templates", "new", name, "--from-file", file)
    assert code == 0, err
    assert f"format {source['format']}" in out.splitlines()[1]
    draft = yaml.safe_load((files.templates_dir / f"{name}.yaml").read_text(encoding="utf-8"))
    assert draft["source"] == source
    code, out, err = run_cli(capsys, "templates", "preview", name)
    assert code == 0, err
    assert out.startswith("2 line(s) read, 2 valid, 0 rejected"), out
    result = files.run(name)
    assert result.success, result.error
    people = files.rows("recipient", "email", "birth_date", order_by="email")
    assert [p["email"] for p in people] == ["ann@x.org", "bob@x.org"]
    assert str(people[0]["birth_date"]) == "1990-05-17"


def test_a_workbooks_header_row_is_found_and_its_date_cells_need_no_format(files):
    found = detect(files.data_dir / "inbox" / "people.xlsx", "recipient")
    assert (found.format, found.sheet, found.skip_lines) == ("xlsx", "Export", 2)
    assert found.mapping == {"E-mail": "email", "Date of birth": "birth_date", "Prénom": "first_name"}
    assert found.formats == {}  # date cells are dates


def test_an_xml_documents_record_element_is_found_with_its_namespaces(files):
    found = detect(files.data_dir / "inbox" / "people.xml", "recipient")
    assert (found.format, found.records) == ("xml", "n1:export/n1:people/n1:person")
    assert found.titles == ["@n2:id", "n1:contact/n1:email", "n1:prenom", "n1:dob"]
    assert found.mapping == {"n1:contact/n1:email": "email", "n1:prenom": "first_name", "n1:dob": "birth_date"}


def test_a_preview_of_a_json_array_and_a_workbook_stops_at_its_rows(files, capsys):
    many = [{"contact": {"email": f"p{i}@x.org"}} for i in range(50)]
    files.file("inbox/many.json", json.dumps(many))
    files.template(yaml.safe_dump({"name": "many", "kind": "import", "source": {"path": "inbox/many.json", "format": "json"},
                                   "target": {"schema": "recipient", "keys": ["email"]},
                                   "columns": [{"source": "contact.email", "target": "email"}]}))
    code, out, err = run_cli(capsys, "templates", "preview", "many", "--rows", "7")
    assert code == 0, err
    assert out.startswith("7 line(s) read, 7 valid, 0 rejected")

"""Excel .xlsx imports (issue 28, item 3) on SQLite and PostgreSQL: a sheet by name or
position under skipped rows, typed cells (dates as dates, numbers exact to their
decimal text), a column mixing kinds read as text, rejects numbered by the row Excel
shows, and a rejects workbook that re-imports with the same template."""

from __future__ import annotations

import datetime as dt
import decimal

import openpyxl
import pytest
import python_calamine
import yaml

from tests.test_export_links import shop  # noqa: F401  (the shop fixture)
from tests.test_structured_imports import fails_in_one_sentence, purchases, reasons, rejects_file

D = decimal.Decimal
UTC = dt.UTC
HEADER = ["Order", "SKU", "Amount", "Bought", "Paid", "Customer"]
ROWS = [
    ["X1", "A", 19.9, dt.datetime(2024, 3, 5, 10, 15, 30), dt.date(2024, 3, 6), "ann@x.org"],
    [None] * 6,
    ["X2", 7, 5, dt.datetime(2024, 3, 5, 23, 0, 0), None, "bob@x.org"],
    ["X3", "B", 0.555, dt.datetime(2024, 3, 6, 9, 0, 0), dt.date(2024, 3, 7), "ann@x.org"],
    ["X4", "C", 1234567890.12, dt.datetime(2024, 3, 7, 9, 0, 0), dt.date(2024, 3, 8), "nobody@x.org"],
]
COLUMNS = [
    {"source": "Order", "target": "order_id"}, {"source": "SKU", "target": "sku"},
    {"source": "Amount", "target": "amount"}, {"source": "Bought", "target": "purchased_at", "timezone": "Europe/Paris"},
    {"source": "Paid", "target": "paid_on", "format": "%d/%m/%Y"},  # date cells are dates: the format is for text
    {"source": "Customer", "target": "recipient", "link": {"via": "email"}},
]


def workbook(campaign, name: str = "in/orders.xlsx", rows: list = ROWS) -> None:
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["nothing to import here"])
    sheet = book.create_sheet("Orders")
    sheet.append(["Monthly orders"])
    sheet.append([])
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    path = campaign.data_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


def template(campaign, sheet="Orders", columns=COLUMNS, path="in/orders.xlsx") -> None:
    campaign.template(yaml.safe_dump({
        "name": "load", "kind": "import",
        "source": {"path": path, "format": "xlsx", "sheet": sheet, "skip_lines": 2},
        "target": {"schema": "purchase", "keys": ["order_id"]},
        "columns": columns,
    }, sort_keys=False))


def test_a_sheet_under_skipped_rows_loads_typed_cells_and_rejects_by_excel_row(shop):  # noqa: F811
    workbook(shop)
    template(shop)
    result = shop.run("load")
    assert result.success, result.error
    assert (result.counts["rows_read"], result.counts["rows_inserted"], result.counts["rows_rejected"]) == (4, 2, 2)
    stored = {r[0]: r for r in purchases(shop) if r[0].startswith("X")}
    # Paris is UTC+1 in March: 10:15:30 there is 09:15:30 UTC; a whole number stays whole text (7).
    assert stored["X1"][1:5] == ("A", D("19.90"), dt.datetime(2024, 3, 5, 9, 15, 30, tzinfo=UTC), dt.date(2024, 3, 6))
    assert stored["X2"][1:3] == ("7", D("5.00")) and stored["X2"][4] is None
    # Rows 4 to 8 of the sheet; row 5 is blank: not a record.
    assert reasons(shop, result) == {
        7: "amount: '0.555' is not a decimal number with at most 10 digits before the point and 2 after",
        8: "recipient: no recipient has email 'nobody@x.org' (on_missing_link: reject)",
    }
    # The rejects workbook: the same sheet name, the rows above the data, the two rows.
    path = rejects_file(shop, result)
    assert path.suffix == ".xlsx"
    book = python_calamine.CalamineWorkbook.from_path(str(path))
    assert book.sheet_names == ["Orders"]
    rows = book.get_sheet_by_name("Orders").to_python()
    assert rows[0][0] == "Monthly orders" and rows[2] == HEADER
    assert [r[0] for r in rows[3:]] == ["X3", "X4"] and rows[3][3] == dt.datetime(2024, 3, 6, 9, 0, 0)
    # It re-imports with the same template: the same two rejects, now rows 4 and 5.
    again = shop.run("load", file=str(path.relative_to(shop.data_dir)))
    assert again.success, again.error
    assert sorted(reasons(shop, again)) == [4, 5] and again.counts["rows_rejected"] == 2


def test_a_sheet_by_position(shop):  # noqa: F811
    workbook(shop, rows=ROWS[:1])
    template(shop, sheet=2)
    result = shop.run("load")
    assert result.success, result.error
    assert result.counts["rows_inserted"] == 1


@pytest.mark.parametrize(
    ("content", "sheet", "columns", "message"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024), "Orders", COLUMNS,
         r"file .*orders\.xlsx is a password-protected \(encrypted\) workbook or an old \.xls file, not an \.xlsx workbook: save it unprotected as \.xlsx\."),
        (b"PK\x03\x04 not a workbook", "Orders", COLUMNS, r"file .*orders\.xlsx is not an \.xlsx workbook \(.*\)\."),
        (None, "Order", COLUMNS, r"file .*orders\.xlsx has no sheet 'Order' \(source\.sheet\) \(did you mean 'Orders'\?\); its sheets: Notes, Orders\."),
        (None, 3, COLUMNS, r"file .*orders\.xlsx has 2 sheet\(s\), not a sheet 3 \(source\.sheet\): Notes, Orders\."),
        (None, "Orders", [{"source": "Order", "target": "order_id"}, {"source": "Paid", "target": "amount"}],
         r"file .*orders\.xlsx: column 'Paid' holds date values \(date32\[day\]\), which cannot fill amount \(a decimal\) \(columns\[1\]\)\."),
        (None, "Orders", [{"source": "Ordre", "target": "order_id"}],
         r"file .*orders\.xlsx has no column 'Ordre' \(columns\[0\]\.source\) \(did you mean 'Order'\?\)"),
    ],
    ids=["encrypted", "corrupted", "unknown-sheet", "no-such-position", "misfit-column", "unknown-column"],
)
def test_a_workbook_that_cannot_be_read_fails_in_one_sentence_and_loads_nothing(shop, content, sheet, columns, message):  # noqa: F811
    if content is None:
        workbook(shop)
    else:
        shop.file("in/orders.xlsx", content)
    template(shop, sheet=sheet, columns=columns)
    fails_in_one_sentence(shop, message)

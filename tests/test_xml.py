"""XML imports and exports (issue 28, items 1 and 2) on SQLite and PostgreSQL: an export
re-imports to identical rows; records found by a namespaced path, fields by child,
nested and attribute paths; rejects by record number with their line, in a well-formed
rejects document that re-imports; text escaped and the encoding declared; malformed,
entity-declaring and external-DTD documents refused in one sentence, nothing loaded."""

from __future__ import annotations


import pytest
import sqlalchemy as sa
import yaml
from lxml import etree

from campaign_pipelines.errors import TemplateError
from campaign_pipelines.templates import parse_template
from tests.test_export_links import export, shop, shop_model  # noqa: F401  (fixtures)
from tests.test_structured_imports import fails_in_one_sentence, import_yaml, purchases, reasons, rejects_file


def xml_export(campaign, columns: list, path: str = "outbox/orders.xml", filter: dict | None = None, **destination) -> bytes:
    text = yaml.safe_load(export("purchase", columns, order_by=["order_id"], **({"filter": filter} if filter else {})))
    text["destination"] = {"path": path, "format": "xml", "root": "orders", "record": "order", **destination}
    campaign.template(yaml.safe_dump(text, sort_keys=False, allow_unicode=True))
    result = campaign.run("out")
    assert result.success, result.error
    return (campaign.data_dir / path).read_bytes()


def test_an_xml_export_reimports_to_identical_rows(shop):  # noqa: F811
    columns = [{"column": "order_id", "xml": "attribute"}, {"column": "sku", "xml": "attribute"}, {"column": "amount"},
               {"column": "purchased_at"}, {"column": "paid_on"}, {"column": "recipient.email", "label": "customer"}]
    data = xml_export(shop, columns)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<orders>\n  <order order_id="P1" sku="B"><amount>19.90</amount>')
    assert b'<order order_id="P5" sku="B"><customer>ann@x.org</customer></order>' in data  # empty values left out
    before = purchases(shop)
    with shop.engine.begin() as conn:
        conn.execute(sa.delete(shop.model.table("purchase").table))
    mapping = [{"source": "@order_id", "target": "order_id"}, {"source": "@sku", "target": "sku"},
               {"source": "amount", "target": "amount"}, {"source": "purchased_at", "target": "purchased_at"},
               {"source": "paid_on", "target": "paid_on"}, {"source": "customer", "target": "recipient", "link": {"via": "email"}}]
    shop.template(import_yaml("outbox/orders.xml", "xml", mapping, records="orders/order"))
    result = shop.run("load")
    assert result.success, result.error
    assert (result.counts["rows_read"], result.counts["rows_inserted"]) == (5, 5)
    assert purchases(shop) == before


def test_xml_text_is_escaped_and_a_character_outside_the_encoding_is_a_reference(shop):  # noqa: F811
    table = shop.model.table("purchase").table
    with shop.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.order_id == "P1").values(sku='A&B <"Ŵ">\nz'))
    columns = [{"column": "order_id", "xml": "attribute"}, {"column": "sku", "xml": "attribute"}, {"column": "sku", "label": "text"}]
    data = xml_export(shop, columns, encoding="cp1252", filter={"order_id": "P1"})
    assert data.startswith(b'<?xml version="1.0" encoding="windows-1252"?>')
    assert b"&#372;" in data  # Ŵ is not in cp1252
    (order,) = etree.fromstring(data)
    assert order.get("sku") == order.findtext("text") == 'A&B <"Ŵ">\nz'


def test_a_control_character_cannot_be_written_in_xml(shop):  # noqa: F811
    table = shop.model.table("purchase").table
    with shop.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.order_id == "P2").values(sku="bell\x07"))
    text = yaml.safe_load(export("purchase", [{"column": "order_id"}, {"column": "sku"}], order_by=["order_id"]))
    text["destination"] = {"path": "outbox/orders.xml", "format": "xml"}
    shop.template(yaml.safe_dump(text, sort_keys=False))
    result = shop.run("out")
    assert not result.success
    assert "row 2, column 'sku': the value holds a control character, which XML 1.0 cannot carry." in result.error
    assert not (shop.data_dir / "outbox" / "orders.xml").exists()


CRM = """\
<?xml version="1.0" encoding="ISO-8859-1"?>
<c:crm xmlns:c="urn:crm" xmlns:x="urn:extra">
  <c:meta><c:count>4</c:count></c:meta>
  <c:orders>
    <c:order c:id="N1" x:sku="A"><c:total>12.50</c:total><c:who><c:mail>ann@x.org</c:mail></c:who></c:order>
    <c:order c:id="N2" x:sku="B">
      <c:total>oops</c:total>
      <c:who><c:mail>bob@x.org</c:mail></c:who>
    </c:order>
    <c:order c:id="N3"><c:total>7</c:total><c:note>caf\xe9 &amp; cr\xe8me</c:note></c:order>
    <c:order c:id="N4"><c:total>1</c:total><c:who><c:mail>nobody@x.org</c:mail></c:who></c:order>
  </c:orders>
</c:crm>
"""
CRM_COLUMNS = [
    {"source": "@c:id", "target": "order_id"}, {"source": "@x:sku", "target": "sku"},
    {"source": "c:total", "target": "amount"}, {"source": "c:who/c:mail", "target": "recipient", "link": {"via": "email"}},
]


def crm_template(campaign, path: str = "in/crm.xml") -> None:
    campaign.template(import_yaml(path, "xml", CRM_COLUMNS, records="c:crm/c:orders/c:order",
                                  namespaces={"c": "urn:crm", "x": "urn:extra"}))


def test_namespaced_records_nested_fields_and_rejects_by_record_in_a_reimportable_document(shop):  # noqa: F811
    shop.file("in/crm.xml", CRM.encode("latin-1"))
    crm_template(shop)
    result = shop.run("load")
    assert result.success, result.error
    assert (result.counts["rows_read"], result.counts["rows_inserted"], result.counts["rows_rejected"]) == (4, 2, 2)
    stored = {r[0]: r for r in purchases(shop) if r[0].startswith("N")}
    assert stored["N1"][1:3] == ("A", pytest.approx(12.5)) and stored["N3"][1] is None
    assert reasons(shop, result) == {
        2: "amount: 'oops' is not a decimal number with at most 10 digits before the point and 2 after",
        4: "recipient: no recipient has email 'nobody@x.org' (on_missing_link: reject)",
    }
    texts = {r["line_number"]: r["line"] for r in shop.rows("import_reject", "line_number", "line", order_by="line_number")}
    assert texts[2].startswith('<!-- record 2, line 6 --><c:order xmlns:c="urn:crm" xmlns:x="urn:extra" c:id="N2" x:sku="B">')
    document = rejects_file(shop, result).read_bytes()
    root = etree.fromstring(document)  # well-formed, under the same root and path
    assert [o.get("{urn:crm}id") for o in root.iterfind("{urn:crm}orders/{urn:crm}order")] == ["N2", "N4"]
    shop.file("in/again.xml", document)
    crm_template(shop, "in/again.xml")
    again = shop.run("load")
    assert again.success, again.error
    assert (again.counts["rows_read"], again.counts["rows_rejected"]) == (2, 2)


LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<orders><order><id>&lol3;</id></order></orders>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE orders [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<orders><order><id>&secret;</id></order></orders>
"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<orders><order><id>A1</id></order><order><id>A2</id></orders>",
         r"file .*orders\.xml is not well-formed XML \(line 1, column \d+: Opening and ending tag mismatch: order line 1 and orders\)(?: after its record 1)?; nothing was loaded\."),
        ("<orders><order><id>&nope;</id></order></orders>", r"is not well-formed XML \(line 1, column \d+: Entity 'nope' not defined\)"),
        (LAUGHS, r"file .*orders\.xml declares entities in its DTD \(<!ENTITY …>\): entity expansion and external entities are refused; nothing was loaded\."),
        (EXTERNAL, r"declares entities in its DTD"),
        ('<?xml version="1.0"?>\n<!DOCTYPE orders SYSTEM "http://127.0.0.1:9/orders.dtd">\n<orders><order><id>A</id></order></orders>',
         r"refers to an external DTD \(http://127\.0\.0\.1:9/orders\.dtd\), which is never fetched"),
        ("<crm><order><id>A</id></order></crm>", r"its root element is <crm>, not the first step of source\.records \(orders/order\)\."),
    ],
    ids=["unclosed", "undefined-entity", "billion-laughs", "external-entity", "external-dtd", "wrong-root"],
)
def test_an_xml_document_that_cannot_be_read_safely_fails_in_one_sentence(shop, content, message):  # noqa: F811
    shop.file("in/orders.xml", content)
    shop.template(import_yaml("in/orders.xml", "xml", [{"source": "id", "target": "order_id"}], records="orders/order"))
    fails_in_one_sentence(shop, message)


def test_xml_template_keys_are_checked(shop_model):  # noqa: F811
    model = shop_model.model
    with pytest.raises(TemplateError, match=r"records is required for format: xml"):
        parse_template(import_yaml("in/x.xml", "xml", [{"source": "id", "target": "order_id"}]), "load.yaml", model)
    with pytest.raises(TemplateError, match=r"records: 'c:order' is not an element name \(no prefix 'c' in namespaces\)"):
        parse_template(import_yaml("in/x.xml", "xml", [{"source": "id", "target": "order_id"}], records="orders/c:order"), "load.yaml", model)
    text = yaml.safe_load(export("purchase", [{"column": "order_id", "label": "order id"}]))
    text["destination"] = {"path": "out.xml", "format": "xml"}
    with pytest.raises(TemplateError, match=r"source\.columns\[0\]: 'order id' is not an XML name; give a label"):
        parse_template(yaml.safe_dump(text), "out.yaml", model)
    text["destination"] = {"path": "out.csv", "root": "x"}
    with pytest.raises(TemplateError, match=r"root and record are for an XML destination"):
        parse_template(yaml.safe_dump(text), "out.yaml", model)

"""The reader on its own: line numbers and text survive any block boundary."""

from __future__ import annotations

import pytest

from campaign_pipelines.importing.read import LINE, TEXT, SourceReader
from campaign_pipelines.importing.rejects import RejectWriter, read_rejects
from campaign_pipelines.templates import parse_template
from tests.helpers import people_template


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
@pytest.mark.parametrize("block_bytes", [7, 64, 1 << 20])
def test_line_numbers_and_text_across_blocks(tmp_path, encoding, block_bytes):
    lines = [f"é{i}@x.org;C{i};Zoë;Ünal" if i % 5 else f"bad{i};C{i}" for i in range(1, 60)]
    (tmp_path / "f.csv").write_text("email;crm_id;first_name;last_name\n" + "\n".join(lines) + "\n", encoding=encoding)
    template = parse_template(people_template(source={"encoding": encoding}), "t")
    with RejectWriter(tmp_path / "r.arrow") as rejects:
        reader = SourceReader(template, tmp_path / "f.csv", rejects, block_bytes=block_bytes)
        rows = [row for batch in reader.batches() for row in batch.to_pylist()]
    assert reader.rows_read == 59
    assert [(r[LINE], r[TEXT]) for r in rows] == [(i + 1, line) for i, line in enumerate(lines, 1) if i % 5]
    assert all(r["first_name"] == "Zoë" for r in rows)
    ragged = read_rejects([tmp_path / "r.arrow"]).to_pylist()
    assert [(r["line"], r["text"]) for r in ragged] == [(i + 1, f"bad{i};C{i}") for i in range(5, 60, 5)]


def test_leading_zeros_and_plus_signs_arrive_as_text(tmp_path):
    (tmp_path / "f.csv").write_text("email;crm_id;first_name;last_name\n+33612345678;007;01000;1e3\n")
    template = parse_template(people_template(), "t")
    with RejectWriter(tmp_path / "r.arrow") as rejects:
        (batch,) = list(SourceReader(template, tmp_path / "f.csv", rejects).batches())
    assert batch.to_pylist()[0] == {
        LINE: 2, TEXT: "+33612345678;007;01000;1e3", "email": "+33612345678", "crm_id": "007", "first_name": "01000", "last_name": "1e3",
    }


@pytest.mark.parametrize("block_bytes", [5, 40, 1 << 20])
def test_multiline_records_keep_their_first_line_number(tmp_path, block_bytes):
    text = (
        "email;crm_id;first_name;last_name\n"
        'ann@x.org;C1;"Ann\nMarie";"Lee; ""Jr"""\n'
        "bob@x.org;C2;Bob;Ray\n"
        '\n'
        'cid@x.org;C3;"two\n\nblank";Moe\n'
        'dan@x.org;C4;"never closed;Fox\n'
        "eve@x.org;C5;Eve;Ito\n"
    )
    (tmp_path / "f.csv").write_text(text)
    template = parse_template(people_template(source={"multiline": True}), "t")
    with RejectWriter(tmp_path / "r.arrow") as rejects:
        reader = SourceReader(template, tmp_path / "f.csv", rejects, block_bytes=block_bytes)
        rows = [row for batch in reader.batches() for row in batch.to_pylist()]
    assert [(r[LINE], r["first_name"], r["last_name"]) for r in rows] == [
        (2, "Ann\nMarie", 'Lee; "Jr"'), (4, "Bob", "Ray"), (6, "two\n\nblank", "Moe"),
    ]
    assert rows[0][TEXT] == 'ann@x.org;C1;"Ann\nMarie";"Lee; ""Jr"""'
    (open_quote,) = read_rejects([tmp_path / "r.arrow"]).to_pylist()
    assert open_quote["line"] == 9
    assert "opened on line 9 is never closed" in open_quote["reason"]
    assert open_quote["text"] == 'dan@x.org;C4;"never closed;Fox\neve@x.org;C5;Eve;Ito'
    assert (reader.rows_read, reader.blank_lines) == (4, 1)

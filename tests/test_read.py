"""The reader on its own: line numbers and text survive any block boundary."""

from __future__ import annotations

import pytest

from campaign_pipelines.errors import CampaignError
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
    # The quote opened on line 9 is never closed: line 9 alone is rejected, line 10 is read again.
    assert [(r[LINE], r["first_name"], r["last_name"]) for r in rows] == [
        (2, "Ann\nMarie", 'Lee; "Jr"'), (4, "Bob", "Ray"), (6, "two\n\nblank", "Moe"), (10, "Eve", "Ito"),
    ]
    assert rows[0][TEXT] == 'ann@x.org;C1;"Ann\nMarie";"Lee; ""Jr"""'
    (open_quote,) = read_rejects([tmp_path / "r.arrow"]).to_pylist()
    assert open_quote["line"] == 9
    assert "opened on line 9 is never closed" in open_quote["reason"]
    assert open_quote["text"] == 'dan@x.org;C4;"never closed;Fox'
    assert (reader.rows_read, reader.blank_lines) == (5, 1)


def read(tmp_path, content: bytes, block_bytes: int = 1 << 20, errors: dict | None = None, **source):
    """Rows (line, text, fields) and rejects (line, text, column, reason) of one file."""
    (tmp_path / "f.csv").write_bytes(content)
    (tmp_path / "r.arrow").unlink(missing_ok=True)
    template = parse_template(people_template(source=source, errors=errors), "t")
    with RejectWriter(tmp_path / "r.arrow") as rejects:
        reader = SourceReader(template, tmp_path / "f.csv", rejects, block_bytes=block_bytes)
        rows = [row for batch in reader.batches() for row in batch.to_pylist()]
    return reader, rows, read_rejects([tmp_path / "r.arrow"]).to_pylist()


@pytest.mark.parametrize("block_bytes", [3, 17, 1 << 20])
@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_every_line_ending_is_a_line_break(tmp_path, ending, block_bytes):
    body = ["email;crm_id;first_name;last_name", "ann@x.org;C1;Ann;Lee", "bob@x.org;C2;Bob;Ray", "", "cid@x.org;C3;Cid;Moe"]
    reader, rows, rejects = read(tmp_path, ending.join(body).encode() + ending.encode(), block_bytes)
    assert [(r[LINE], r[TEXT]) for r in rows] == [(2, body[1]), (3, body[2]), (5, body[4])]
    assert (reader.rows_read, reader.blank_lines, rejects) == (3, 1, [])


def test_a_quoted_line_break_is_part_of_the_value_by_default(tmp_path):
    content = b'email;crm_id;first_name;last_name\r\nann@x.org;C1;"Ann\r\nMarie";Lee\r\nbob@x.org;C2;Bob;Ray\r\n'
    _, rows, rejects = read(tmp_path, content)
    assert [(r[LINE], r["first_name"]) for r in rows] == [(2, "Ann\nMarie"), (4, "Bob")]
    assert rejects == []
    # Strict mode, as asked: the line with the open quote and the one closing it are rejected.
    _, rows, rejects = read(tmp_path, content, multiline=False)
    assert [r[LINE] for r in rows] == [4]
    assert [r["line"] for r in rejects] == [2, 3]


@pytest.mark.parametrize("block_bytes", [64, 1 << 20])
def test_an_unclosed_quote_swallows_at_most_max_record_lines(tmp_path, block_bytes):
    good = [f"p{i}@x.org;C{i};P{i};Q{i}" for i in range(3, 40)]
    content = "email;crm_id;first_name;last_name\nann@x.org;C1;\"Ann;Lee\n" + "\n".join(good) + "\n"
    reader, rows, rejects = read(tmp_path, content.encode(), block_bytes, max_record_lines=5)
    assert [r[LINE] for r in rows] == list(range(3, 40))  # every line after the open quote is read again
    assert [(r["line"], r["text"]) for r in rejects] == [(2, 'ann@x.org;C1;"Ann;Lee')]
    assert "opened on line 2 is not closed within 5 lines" in rejects[0]["reason"]
    assert reader.rows_read == 38


def test_a_line_longer_than_a_line_may_be_is_rejected_and_reading_goes_on(tmp_path, monkeypatch):
    from campaign_pipelines.importing import lines as lines_module

    monkeypatch.setattr(lines_module, "MAX_LINE_CHARS", 1000)
    runaway = "x@x.org;C9;" + "y" * 5000 + ";Z"
    content = f"email;crm_id;first_name;last_name\nann@x.org;C1;Ann;Lee\n{runaway}\nbob@x.org;C2;Bob;Ray\n"
    reader, rows, rejects = read(tmp_path, content.encode(), block_bytes=64)
    assert [(r[LINE], r["first_name"]) for r in rows] == [(2, "Ann"), (4, "Bob")]
    (long_line,) = rejects
    assert long_line["line"] == 3 and long_line["text"] == runaway[: lines_module.LONG_LINE_HEAD]
    assert f"line is {len(runaway):,} characters long" in long_line["reason"]
    assert reader.rows_read == 3


def test_a_line_longer_than_the_parsers_block_is_read(tmp_path):
    # pyarrow's parser takes 1 MiB blocks; a 3 MiB field used to fail with "straddling object".
    big = "n" * (3 << 20)
    content = f"email;crm_id;first_name;last_name\nann@x.org;C1;{big};Lee\nbob@x.org;C2;Bob;Ray\n"
    _, rows, rejects = read(tmp_path, content.encode())
    assert [(r[LINE], len(r["first_name"])) for r in rows] == [(2, len(big)), (3, 3)]
    assert rejects == []


def test_nul_bytes_reject_the_line_naming_the_column_or_are_stripped(tmp_path):
    content = b"email;crm_id;first_name;last_name\nann@x.org;C1;A\x00nn;Lee\nbob@x.org;C2;Bob;Ray\n"
    _, rows, rejects = read(tmp_path, content)
    assert [r[LINE] for r in rows] == [3]
    assert [(r["line"], r["column"]) for r in rejects] == [(2, "first_name")]
    assert "NUL byte" in rejects[0]["reason"]
    _, rows, rejects = read(tmp_path, content, nul_bytes="strip")
    assert [r["first_name"] for r in rows] == ["Ann", "Bob"] and rejects == []


def test_a_header_only_file_is_an_empty_delta(tmp_path):
    reader, rows, rejects = read(tmp_path, b"email;crm_id;first_name;last_name\r\n\r\n")
    assert (reader.rows_read, rows, rejects) == (0, [], [])
    with pytest.raises(CampaignError, match="has no data lines after its header"):
        read(tmp_path, b"email;crm_id;first_name;last_name\n", errors={"fail_if_empty": True})
    with pytest.raises(CampaignError, match="is empty; it has no header line"):
        read(tmp_path, b"")

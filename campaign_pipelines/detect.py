"""Campaign's import wizard, "Auto-detect format" and "Guess the destination fields":
from a sample file, the encoding (a BOM, else valid UTF-8, else the Western single-byte
codec charset-normalizer ranks best), the delimiter, quote and header (the standard
library's csv.Sniffer), a mapping from the header titles to the table's fields (case- and
accent-insensitive, with common synonyms) and to its links (a title naming a unique field
of the linked table, such as an e-mail for a link to recipient), and the date, timestamp
and decimal formats most of the values read with (a few bad values do not hide the
format). JSON Lines, JSON and Parquet files are recognised by detect_records.py, their
key paths matched as titles are. `templates new --from-file` writes the result as a
template draft."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from charset_normalizer import from_bytes

import schemas
from campaign_pipelines.detect_records import keyed_format, keyed_sample
from campaign_pipelines.errors import CampaignError

SAMPLE_BYTES = 1 << 20
SAMPLE_LINES = 200
DELIMITERS = ";,\t|"
WESTERN_CODECS = ["cp1252", "latin_1", "iso8859_15"]
# Day first before month first: where both read as many values, the European reading wins.
DATE_FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%d.%m.%Y", "%d-%m-%Y", "%m/%d/%Y", "%Y/%m/%d", "%Y%m%d", "%d/%m/%y"]
TIMESTAMP_FORMATS = [
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", *DATE_FORMATS,
]
DECIMAL_COMMA = re.compile(r"^-?\d{1,3}(?:[ .]?\d{3})*,\d+$|^-?\d+,\d+$")
# Titles a field answers to besides its own name (normalized: lower case, no accents,
# letters and digits only).
SYNONYMS = {
    "email": ["email", "mail", "emailaddress", "adresseemail", "adressemail", "adressemel", "courriel", "mel"],
    "crm_id": ["crmid", "idcrm", "customerid", "clientid", "idclient", "customerno", "numeroclient"],
    "first_name": ["firstname", "prenom", "givenname", "forename"],
    "last_name": ["lastname", "nom", "surname", "familyname", "nomdefamille"],
    "birth_date": ["birthdate", "dateofbirth", "dob", "datedenaissance", "naissance", "birthday"],
    "gender": ["gender", "sex", "sexe", "civilite"],
    "phone": ["phone", "telephone", "tel", "phonenumber", "fixe"],
    "mobile_phone": ["mobile", "mobilephone", "cellphone", "portable", "gsm", "telephonemobile"],
    "address": ["address", "adresse", "street", "rue"],
    "postal_code": ["postalcode", "codepostal", "zip", "zipcode", "postcode", "cp"],
    "city": ["city", "ville", "town", "localite", "commune"],
    "country_code": ["country", "countrycode", "pays", "codepays"],
}


def normalized(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", text.lower())


@dataclass
class Detected:
    path: Path
    encoding: str
    delimiter: str
    quote: str | None
    header: bool
    titles: list[str]
    rows: list[list[str]]
    mapping: dict[str, str] = field(default_factory=dict)  # title -> field or link
    formats: dict[str, str | dict[str, str]] = field(default_factory=dict)  # title -> date or number format
    unmapped: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # title -> the linked table's field it holds (via)
    format: str = "delimited"  # or a keyed format (detect_records.py): titles are then key paths
    records: str | None = None  # a JSON document's key path to its records
    sheet: str | None = None  # a workbook's sheet, and its rows above the header
    skip_lines: int = 0
    namespaces: dict[str, str] | None = None  # an XML document's prefixes


def detect_encoding(path: Path, data: bytes) -> str:
    if not data:
        raise CampaignError(f"file {path} is empty: there is nothing to detect.")
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return name
    if (nul := data.find(b"\x00")) >= 0:
        raise CampaignError(f"file {path} looks binary (a NUL byte at offset {nul}): not a delimited text file.")
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3 and len(data) == SAMPLE_BYTES:
            return "utf-8"  # the sample cut a character in two
    best = from_bytes(data, cp_isolation=WESTERN_CODECS).best()
    return best.encoding if best is not None else "cp1252"


def _sniff(path: Path, text: str) -> tuple[str, str | None, bool]:
    lines = text.splitlines()[:SAMPLE_LINES]
    sample = "\n".join(lines)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
        delimiter = dialect.delimiter
    except csv.Error:
        # No consistent pattern: the candidate seen the same, non-zero, number of times on most lines.
        counts = {d: [line.count(d) for line in lines if line] for d in DELIMITERS}
        scored = {d: max(c.count(n) for n in set(c)) for d, c in counts.items() if c and max(c) > 0}
        if not scored:
            raise CampaignError(f"file {path}: no delimiter among {' '.join(repr(d) for d in DELIMITERS)} splits its lines.") from None
        delimiter = max(scored, key=scored.get)  # type: ignore[arg-type]
    quote = '"' if '"' in sample else ("'" if re.search(rf"(^|{re.escape(delimiter)})'", sample) else '"')
    try:
        header = csv.Sniffer().has_header(sample)
    except csv.Error:
        header = True
    return delimiter, quote, header


def _answers(fields: list[schemas.Field]) -> dict[str, str]:
    """Normalized title -> field name, for each field's name and synonyms."""
    answers: dict[str, str] = {}
    for f in fields:
        for word in [f.name, *SYNONYMS.get(f.name, [])]:
            answers.setdefault(normalized(word), f.name)
    return answers


def guess_mapping(titles: list[str], spec: schemas.TableSpec, keyed: bool = False) -> tuple[dict[str, str], list[str]]:
    """Each title's field, where its name or a synonym matches; a field is taken once."""
    answers = _answers([f for f in spec.fields if not (f.generated or f.managed or f.foreign_key)])
    mapping: dict[str, str] = {}
    for title in titles:
        # A key path (customer.email, who/c:mail, @id) answers by its whole path, else by its last step.
        target = answers.get(normalized(title)) or (answers.get(normalized(_last_step(title))) if keyed else None)
        if target and target not in mapping.values():
            mapping[title] = target
    return mapping, [t for t in titles if t not in mapping]


def _last_step(title: str) -> str:
    """A key path's last step, without its XML prefix (`who/c:mail` → `mail`)."""
    return re.split(r"[./@]", title)[-1].rpartition(":")[2]


def guess_links(titles: list[str], spec: schemas.TableSpec, model: schemas.DataModel, keyed: bool = False) -> dict[str, tuple[str, str]]:
    """title -> (link, via) for the titles naming a unique field of a linked table: an
    e-mail or a CRM id column for a link to recipient ("Customer e-mail" ends with one)."""
    found: dict[str, tuple[str, str]] = {}
    for link in spec.links:
        linked = model.table(link.table)
        unique = [f for f in linked.fields if f.unique and not f.generated]
        unique.sort(key=lambda f: f.name != link.via)  # the link's own `via` first
        answers = _answers(unique)
        for title in titles:
            word = normalized(_last_step(title) if keyed else title)
            via = answers.get(word) or next((v for w, v in answers.items() if len(w) > 2 and word.endswith(w)), None)
            if via and title not in found and link.name not in (name for name, _ in found.values()):
                found[title] = (link.name, via)
    return found


def _best_format(values: list[str], formats: list[str]) -> str | None:
    """The format most values read with, if it reads more than half of them (a few bad
    values, such as 31/02/1985, do not hide the format of the others)."""
    values = [v.strip() for v in values if v.strip()]
    best, best_count = None, 0
    for fmt in formats if values else []:
        count = 0
        for value in values:
            try:
                dt.datetime.strptime(value, fmt)
                count += 1
            except ValueError:
                pass
        if count > best_count:
            best, best_count = fmt, count
    return best if best_count * 2 > len(values) else None


def guess_date_format(values: list[str]) -> str | None:
    return _best_format(values, DATE_FORMATS)


def guess_timestamp_format(values: list[str]) -> str | None:
    return _best_format(values, TIMESTAMP_FORMATS)


def guess_number_format(values: list[str]) -> dict[str, str] | None:
    """{decimal: ","} when most values are written with a decimal comma (12,90)."""
    values = [v.strip() for v in values if v.strip()]
    commas = sum(1 for v in values if DECIMAL_COMMA.match(v))
    return {"decimal": ","} if values and commas * 2 > len(values) else None


def detect(path: Path, table: str, model: schemas.DataModel = schemas.BUILTIN) -> Detected:
    with path.open("rb") as stream:
        data = stream.read(SAMPLE_BYTES)
    spec = model.table(table)
    keyed = keyed_format(path, data) if data else None
    if keyed:
        sample = keyed_sample(path, keyed, data)
        encoding, delimiter, quote, header = "utf-8", ",", '"', True
        titles, body = sample.titles, sample.rows
    else:
        encoding = detect_encoding(path, data)
        text = data.decode(encoding, errors="ignore")
        delimiter, quote, header = _sniff(path, text)
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote or '"') if r][:SAMPLE_LINES]
        if not rows:
            raise CampaignError(f"file {path} has no line to read.")
        # The sniffer's header test compares the first line with the others' types: with
        # text everywhere it says no header. A first line naming the table's fields is one.
        header = header or bool(guess_mapping([t.strip() for t in rows[0]], spec)[0])
        titles = [t.strip() for t in rows[0]] if header else [str(i + 1) for i in range(len(rows[0]))]
        body = rows[1:] if header else rows
    mapping, unmapped = guess_mapping(titles, spec, bool(keyed)) if header else ({}, titles)
    links = guess_links(unmapped, spec, model, bool(keyed)) if header else {}
    mapping |= {title: link for title, (link, _) in links.items()}
    unmapped = [t for t in unmapped if t not in links]
    formats: dict[str, str | dict[str, str]] = {}
    for i, title in enumerate(titles):
        if title not in mapping or title in links or (keyed and title in sample.typed):
            continue
        values = [r[i] for r in body if i < len(r)]
        kind = spec.field(mapping[title]).kind
        guess = {"date": guess_date_format, "timestamp": guess_timestamp_format}.get(kind)
        if kind == "timestamp" and keyed in ("jsonl", "json") and _reads_as_iso(values):
            guess = None  # JSON's default: ISO 8601
        if kind in ("decimal", "float"):
            guess = guess_number_format
        if guess and (fmt := guess(values)):
            formats[title] = fmt
    return Detected(path, encoding, delimiter, quote, header, titles, body, mapping, formats, unmapped,
                    {title: via for title, (_, via) in links.items()}, keyed or "delimited", sample.records if keyed else None,
                    sample.sheet if keyed else None, sample.skip_lines if keyed else 0, sample.namespaces if keyed else None)


def _reads_as_iso(values: list[str]) -> bool:
    values = [v for v in values if v.strip()]
    readable = 0
    for value in values:
        try:
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            readable += 1
        except ValueError:
            pass
    return bool(values) and readable * 2 > len(values)


def candidate_keys(spec: schemas.TableSpec) -> list[list[str]]:
    """The ways a record of the table is found: each unique field, each unique set, the
    primary key unless the database generates it."""
    keys = [[f.name] for f in spec.unique_fields] + [list(k) for k in spec.unique_together]
    if not any(spec.field(k).generated for k in spec.primary_key):
        keys.append(list(spec.primary_key))
    return keys


def keys_of(detected: Detected, spec: schemas.TableSpec) -> tuple[list[str], list[str]]:
    """The reconciliation keys among the mapped fields: the first key whose columns are all
    mapped, and the other mapped one-field keys as secondary keys; ([], []) when none is."""
    mapped = set(detected.mapping.values())
    complete = [k for k in candidate_keys(spec) if set(k) <= mapped]
    if not complete:
        return [], []
    return complete[0], [k[0] for k in complete[1:] if len(k) == 1]

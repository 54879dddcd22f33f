"""Campaign's import wizard, "Auto-detect format" and "Guess the destination fields":
from a sample file, the encoding (a BOM, else valid UTF-8, else the Western single-byte
codec charset-normalizer ranks best), the delimiter, quote and header (the standard
library's csv.Sniffer), a mapping from the header titles to the table's fields (case- and
accent-insensitive, with common synonyms), and date formats guessed from the values.
`templates new --from-file` writes the result as a template draft."""

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
from campaign_pipelines.errors import CampaignError

SAMPLE_BYTES = 1 << 20
SAMPLE_LINES = 200
DELIMITERS = ";,\t|"
WESTERN_CODECS = ["cp1252", "latin_1", "iso8859_15"]
# Day first before month first: where both read every value, the European reading wins.
DATE_FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%d.%m.%Y", "%d-%m-%Y", "%m/%d/%Y", "%Y/%m/%d", "%Y%m%d", "%d/%m/%y"]
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
    mapping: dict[str, str] = field(default_factory=dict)  # title -> field
    formats: dict[str, str] = field(default_factory=dict)  # title -> date format
    unmapped: list[str] = field(default_factory=list)


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


def guess_mapping(titles: list[str], spec: schemas.TableSpec) -> tuple[dict[str, str], list[str]]:
    """Each title's field, where its name or a synonym matches; a field is taken once."""
    answers: dict[str, str] = {}
    for f in spec.fields:
        if f.generated or f.managed:
            continue
        for word in [f.name, *SYNONYMS.get(f.name, [])]:
            answers.setdefault(normalized(word), f.name)
    mapping: dict[str, str] = {}
    for title in titles:
        target = answers.get(normalized(title))
        if target and target not in mapping.values():
            mapping[title] = target
    return mapping, [t for t in titles if t not in mapping]


def guess_date_format(values: list[str]) -> str | None:
    values = [v.strip() for v in values if v.strip()]
    for fmt in DATE_FORMATS if values else []:
        try:
            for value in values:
                dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        return fmt
    return None


def detect(path: Path, table: str) -> Detected:
    with path.open("rb") as stream:
        data = stream.read(SAMPLE_BYTES)
    encoding = detect_encoding(path, data)
    text = data.decode(encoding, errors="ignore")
    delimiter, quote, header = _sniff(path, text)
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quote or '"') if r][:SAMPLE_LINES]
    if not rows:
        raise CampaignError(f"file {path} has no line to read.")
    spec = schemas.table(table)
    # The sniffer's header test compares the first line with the others' types: with
    # text everywhere it says no header. A first line naming the table's fields is one.
    header = header or bool(guess_mapping([t.strip() for t in rows[0]], spec)[0])
    titles = [t.strip() for t in rows[0]] if header else [str(i + 1) for i in range(len(rows[0]))]
    body = rows[1:] if header else rows
    mapping, unmapped = guess_mapping(titles, spec) if header else ({}, titles)
    formats = {}
    for i, title in enumerate(titles):
        if title in mapping and spec.field(mapping[title]).kind in ("date", "timestamp"):
            fmt = guess_date_format([r[i] for r in body if i < len(r)])
            if fmt:
                formats[title] = fmt
    return Detected(path, encoding, delimiter, quote, header, titles, body, mapping, formats, unmapped)


def keys_of(detected: Detected, spec: schemas.TableSpec) -> list[str]:
    """The reconciliation keys among the mapped fields: the first unique one (and the others as secondary)."""
    keyable = [f.name for f in spec.unique_fields] + [k for k in spec.primary_key if not spec.field(k).generated]
    keys = [name for name in keyable if name in detected.mapping.values()]
    if not keys:
        raise CampaignError(
            f"{detected.path}: no column maps to a key field of {spec.name} ({', '.join(keyable)}); "
            f"columns: {', '.join(detected.titles)}. Rename the column, or write the template's target.keys by hand."
        )
    return keys

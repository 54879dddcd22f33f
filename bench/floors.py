"""The floors: the least work that loads the benchmark file with the same rules.

PostgreSQL: one `psql` process, one transaction: `\\copy` the file's lines into an
unindexed temporary text table (one text column per line, plus an identity column for
the line order), then ONE set-based statement: split the lines, apply the template's
validations as SQL predicates, keep the first line of each e-mail (`DISTINCT ON`,
duplicates_in_file: reject) and `INSERT … ON CONFLICT (email) DO UPDATE … WHERE the
values differ` (so a re-import rewrites nothing, as our rows_unchanged rule). It returns
its counts, so the floor is checked line by line like our import.

SQLite: one `sqlite3` shell process: `.import --csv` into a temporary staging table,
then one `INSERT … SELECT … ON CONFLICT(email) DO UPDATE` (first line per e-mail by
`row_number()`; SQLite has no DISTINCT ON).

The validations are those of the bench template and `schemas/recipient.py`: e-mail
present, ≤ 255 and matching the same pattern; names ≤ 64; birth date a valid
YYYY-MM-DD (a pattern plus the cast) between 1900-01-01 and today; gender M/F/U after
trim+upper; phone ≤ 32 of digits, spaces and + ( ) . -; country an ISO alpha-2 code;
city ≤ 64; postal code ≤ 16; opt_in 0/1 (1 → email_denylisted false, 0 → true).
Limit: the PostgreSQL date pattern accepts 1987-02-30, which the cast would then refuse
(failing the statement); the generator never writes such a date.
"""

from __future__ import annotations

from pathlib import Path

from schemas.recipient import COUNTRY_CODES

COUNTRIES = ", ".join(f"'{c}'" for c in sorted(COUNTRY_CODES))
# Mapped columns, in the order of the file after the split.
COLUMNS = ("email", "first_name", "last_name", "birth_date", "gender", "mobile_phone", "country_code", "city",
           "postal_code", "email_denylisted")
UPDATABLE = COLUMNS[1:]


def pg_script(csv_path: Path) -> str:
    path = str(csv_path).replace("'", "''")
    new = {c: f"coalesce(EXCLUDED.{c}, r.{c})" for c in UPDATABLE}  # empty_values: keep
    sets = ",\n    ".join(f"{c} = {new[c]}" for c in UPDATABLE)
    differ = f"({', '.join(new[c] for c in UPDATABLE)}) IS DISTINCT FROM ({', '.join('r.' + c for c in UPDATABLE)})"
    return rf"""\set ON_ERROR_STOP 1
\pset footer off
BEGIN;
CREATE TEMP TABLE floor_raw (n bigint GENERATED ALWAYS AS IDENTITY, line text) ON COMMIT DROP;
\copy floor_raw (line) FROM '{path}' WITH (FORMAT text, DELIMITER E'\x01', HEADER true)
WITH typed AS MATERIALIZED (
  SELECT n,
    nullif(lower(btrim(split_part(line, ',', 1))), '') AS email,
    nullif(btrim(split_part(line, ',', 2)), '') AS first_name,
    nullif(btrim(split_part(line, ',', 3)), '') AS last_name,
    nullif(btrim(split_part(line, ',', 4)), '') AS birth_text,
    CASE WHEN btrim(split_part(line, ',', 4)) ~ '^\d{{4}}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$' THEN btrim(split_part(line, ',', 4))::date END AS birth_date,
    nullif(upper(btrim(split_part(line, ',', 5))), '') AS gender,
    nullif(btrim(split_part(line, ',', 6)), '') AS mobile_phone,
    nullif(upper(btrim(split_part(line, ',', 7))), '') AS country_code,
    nullif(btrim(split_part(line, ',', 8)), '') AS city,
    nullif(btrim(split_part(line, ',', 9)), '') AS postal_code,
    CASE btrim(split_part(line, ',', 10)) WHEN '1' THEN false WHEN '0' THEN true END AS email_denylisted,
    nullif(btrim(split_part(line, ',', 10)), '') AS opt_in
  FROM floor_raw
  WHERE length(line) - length(replace(line, ',', '')) = 9
), valid AS (
  SELECT * FROM typed
  WHERE email IS NOT NULL AND length(email) <= 255 AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'
    AND (first_name IS NULL OR length(first_name) <= 64)
    AND (last_name IS NULL OR length(last_name) <= 64)
    AND (birth_text IS NULL OR birth_date BETWEEN DATE '1900-01-01' AND current_date)
    AND (gender IS NULL OR gender IN ('M', 'F', 'U'))
    AND (mobile_phone IS NULL OR (length(mobile_phone) <= 32 AND mobile_phone ~ '^[-0-9 +().]*$'))
    AND (country_code IS NULL OR country_code IN ({COUNTRIES}))
    AND (city IS NULL OR length(city) <= 64)
    AND (postal_code IS NULL OR length(postal_code) <= 16)
    AND (opt_in IS NULL OR email_denylisted IS NOT NULL)
), first_lines AS (
  SELECT DISTINCT ON (email) * FROM valid ORDER BY email, n
), written AS (
  INSERT INTO recipient AS r ({", ".join(COLUMNS)}, origin, created_at, updated_at)
  SELECT {", ".join(c if c != "email_denylisted" else "coalesce(email_denylisted, false)" for c in COLUMNS)},
         'bench', now(), now()
  FROM first_lines
  ON CONFLICT (email) DO UPDATE SET
    {sets},
    updated_at = EXCLUDED.updated_at
  WHERE {differ}
  RETURNING (xmax = 0) AS inserted
)
SELECT 'FLOOR_COUNTS' AS tag,
       (SELECT count(*) FROM floor_raw) AS rows_read,
       (SELECT count(*) FROM first_lines) AS rows_loaded,
       count(*) FILTER (WHERE inserted) AS rows_inserted,
       count(*) FILTER (WHERE NOT inserted) AS rows_updated
FROM written;
COMMIT;
"""


def sqlite_script(csv_path: Path) -> str:
    path = str(csv_path).replace('"', '""')
    new = {c: f"coalesce(excluded.{c}, recipient.{c})" for c in UPDATABLE}
    sets = ",\n    ".join(f"{c} = {new[c]}" for c in UPDATABLE)
    differ = " OR ".join(f"{new[c]} IS NOT recipient.{c}" for c in UPDATABLE)
    raw = ("email", "first_name", "last_name", "birth_date", "gender", "phone", "country", "city", "postal_code", "opt_in")
    now = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
    return rf"""
.bail on
CREATE TEMP TABLE floor_raw ({", ".join(f"{c} TEXT" for c in raw)});
.import --csv --skip 1 --schema temp "{path}" floor_raw
BEGIN;
INSERT INTO recipient ({", ".join(COLUMNS)}, origin, denylisted, created_at, updated_at)
SELECT {", ".join(c if c != "email_denylisted" else "coalesce(email_denylisted, 0)" for c in COLUMNS)}, 'bench', 0, {now}, {now}
FROM (
  SELECT *, row_number() OVER (PARTITION BY email ORDER BY line) AS k FROM (
    SELECT rowid AS line,
      nullif(lower(trim(email)), '') AS email,
      nullif(trim(first_name), '') AS first_name,
      nullif(trim(last_name), '') AS last_name,
      nullif(trim(birth_date), '') AS birth_date,
      nullif(upper(trim(gender)), '') AS gender,
      nullif(trim(phone), '') AS mobile_phone,
      nullif(upper(trim(country)), '') AS country_code,
      nullif(trim(city), '') AS city,
      nullif(trim(postal_code), '') AS postal_code,
      CASE trim(opt_in) WHEN '1' THEN 0 WHEN '0' THEN 1 END AS email_denylisted,
      nullif(trim(opt_in), '') AS opt_in
    FROM temp.floor_raw
    WHERE opt_in IS NOT NULL
  )
  WHERE email IS NOT NULL AND length(email) <= 255 AND email REGEXP '^[^@ ]+@[^@ ]+\.[^@ ]+$'
    AND (first_name IS NULL OR length(first_name) <= 64)
    AND (last_name IS NULL OR length(last_name) <= 64)
    AND (birth_date IS NULL OR (date(birth_date) IS birth_date AND birth_date BETWEEN '1900-01-01' AND date('now')))
    AND (gender IS NULL OR gender IN ('M', 'F', 'U'))
    AND (mobile_phone IS NULL OR (length(mobile_phone) <= 32 AND mobile_phone REGEXP '^[-0-9 +().]*$'))
    AND (country_code IS NULL OR country_code IN ({COUNTRIES}))
    AND (city IS NULL OR length(city) <= 64)
    AND (postal_code IS NULL OR length(postal_code) <= 16)
    AND (opt_in IS NULL OR email_denylisted IS NOT NULL)
)
WHERE k = 1
ON CONFLICT (email) DO UPDATE SET
    {sets},
    updated_at = excluded.updated_at
  WHERE {differ};
SELECT 'FLOOR_COUNTS', (SELECT count(*) FROM temp.floor_raw), changes(), (SELECT count(*) FROM recipient);
COMMIT;
"""

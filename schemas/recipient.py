"""recipient: the profiles (Adobe Campaign's nms:recipient)."""

from __future__ import annotations

import datetime as dt

from schemas.base import Check, Field, TableSpec

# ISO 3166-1 alpha-2, plus XX for "unknown" as Campaign uses it.
COUNTRY_CODES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN
    BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL
    GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM
    JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD
    SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XX
    """.split()
)

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_PATTERN = r"^[0-9 +().\-]*$"


EMAIL = Check("str_matches", EMAIL_PATTERN, error="is not a valid e-mail address")
PHONE = Check("str_matches", PHONE_PATTERN, error="may hold only digits, spaces and + ( ) . -")
BIRTH_DATE = Check("in_range", dt.date(1900, 1, 1), dt.date.today, error="must be between 1900-01-01 and today")
GENDER = Check("isin", ["M", "F", "U"], error="must be one of M, F, U")
EMAIL_FORMAT = Check("isin", ["text", "html", "undefined"], error="must be one of text, html, undefined")
COUNTRY = Check("isin", sorted(COUNTRY_CODES), error="is not an ISO 3166-1 alpha-2 country code (XX when unknown)")


TABLE = TableSpec(
    name="recipient",
    description="Recipient profiles (Campaign's nms:recipient).",
    importable=True,
    primary_key=("id",),
    fields=(
        Field("id", "integer", "Generated identifier.", nullable=False, generated=True),
        Field("email", "string", "E-mail address.", max_length=255, unique=True, checks=(EMAIL,)),
        Field("crm_id", "string", "CRM identifier; the usual secondary key.", max_length=64, unique=True),
        Field("first_name", "string", max_length=64),
        Field("last_name", "string", max_length=64),
        Field("birth_date", "date", checks=(BIRTH_DATE,)),
        Field("gender", "string", "M, F or U.", max_length=1, checks=(GENDER,)),
        Field("email_format", "string", "text, html or undefined.", max_length=9, checks=(EMAIL_FORMAT,)),
        Field("phone", "string", max_length=32, checks=(PHONE,)),
        Field("mobile_phone", "string", max_length=32, checks=(PHONE,)),
        Field("address", "string", max_length=255),
        Field("postal_code", "string", "Kept as text: leading zeros matter.", max_length=16),
        Field("city", "string", max_length=64),
        Field("country_code", "string", "ISO 3166-1 alpha-2; XX when unknown.", max_length=2, checks=(COUNTRY,)),
        Field("denylisted", "boolean", "Denylisted on all channels.", nullable=False, default=False),
        Field("email_denylisted", "boolean", "Denylisted for e-mail.", nullable=False, default=False),
        Field("folder", "string", max_length=64),
        Field("origin", "string", max_length=64),
        Field("created_at", "timestamp", nullable=False, managed=True),
        Field("updated_at", "timestamp", nullable=False, managed=True),
    ),
)

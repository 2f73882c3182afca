"""The review page's languages: gettext catalogs (Babel) installed into one Jinja environment per language.

The catalogs are the committed ``review/locale/<dir>/LC_MESSAGES/messages.po`` files; they are compiled in
memory when the app starts (:func:`translations`, Babel's ``pofile`` / ``mofile``), so there is no build step
and no committed binary. English is the source language: its msgids are the English text, and a language
without a catalog shows them as they are.

Which language a request gets: ``?lang=`` (remembered in the :data:`LANG_COOKIE` cookie), else the cookie,
else the site's ``review.language``. Values the code shows (incident types, states, review statuses, signals)
are translated through the tables below, whose English labels are marked with :func:`N_` for extraction.

Extract and update (run from the repository root)::

    pybabel extract -F review/babel.cfg -k N_ -k UserError:2 -k VerdictRejected --no-location --omit-header \
        -o review/locale/messages.pot .
    pybabel update -i review/locale/messages.pot -d review/locale -D messages --no-location --omit-header
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime
from babel.messages import mofile, pofile
from babel.support import NullTranslations, Translations
from fastapi import HTTPException, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[str, ...] = get_args(Language)
DEFAULT_LANGUAGE: Language = "en"
LANG_COOKIE = "patrol_lang"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}
"""Each language's name in itself, for the switch in the page header."""


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


INCIDENT_TYPES = {
    "illegal_parking": N_("Illegal parking"),
    "street_stall": N_("Street stall"),
    "fallen_branch": N_("Fallen branch"),
    "obstruction": N_("Obstruction"),
    "camera_offline": N_("Camera offline"),
}
INCIDENT_STATES = {"open": N_("open"), "closed": N_("closed")}
REVIEW_STATUSES = {"unreviewed": N_("unreviewed"), "confirmed": N_("confirmed"), "rejected": N_("rejected"),
                   "all": N_("all")}
VERDICTS = {"confirm": N_("confirm"), "reject": N_("reject")}
EVENTS = {"opened": N_("opened"), "updated": N_("updated"), "closed": N_("closed")}
SEVERITIES = {"low": N_("low"), "medium": N_("medium"), "high": N_("high")}
SIGNALS = {"stall_object": N_("stall object"), "lingering_person": N_("person lingering"),
           "static_occupancy": N_("static occupancy"), "stall_model": N_("stall model"),
           "stationary_vehicle": N_("vehicle standing still"), "area_frac": N_("share of the frame"),
           "contrast": N_("contrast"), "vegetation_score": N_("vegetation score"),
           "green_brown_share": N_("green and brown share"), "edge_density": N_("edge density")}
DURATIONS = {"dwell_s": N_("standing"), "seen_s": N_("seen"), "unseen_s": N_("unseen"), "evidence_s": N_("evidence"),
             "static_s": N_("static"), "since_arrival_s": N_("since it appeared"), "hidden_s": N_("hidden"),
             "incident_s": N_("incident"), "unsupported_s": N_("without support")}
THRESHOLDS = {"limit_s": N_("time limit (s)"), "still_tolerance": N_("still tolerance"),
              "min_coverage": N_("minimum coverage"), "occlusion_grace_s": N_("occlusion grace (s)"),
              "min_area": N_("minimum area"), "diff_threshold": N_("difference threshold"),
              "long_term_s": N_("long-term model (s)"), "short_term_s": N_("short-term model (s)"),
              "vegetation_colour_min": N_("vegetation colour minimum"),
              "vegetation_edge_min": N_("vegetation edge minimum"), "evidence_threshold": N_("evidence threshold"),
              "linger_s": N_("lingering time (s)")}
CLIP_STATES = {"pending": N_("pending"), "written": N_("written"), "failed": N_("failed"),
               "unavailable": N_("unavailable")}
TABLES: dict[str, dict[str, str]] = {
    "type": INCIDENT_TYPES, "state": INCIDENT_STATES, "status": REVIEW_STATUSES, "verdict": VERDICTS,
    "event": EVENTS, "severity": SEVERITIES, "signal": SIGNALS, "clip": CLIP_STATES, "duration": DURATIONS,
    "threshold": THRESHOLDS,
}


class UserError(HTTPException):
    """An HTTP error a person reads: the English text in the JSON API, its translation on a page.

    ``msgid`` is a fixed English sentence with named ``%(x)s`` placeholders (extracted as ``UserError``'s
    argument, see ``review/babel.cfg``); ``params`` fill them after translation.
    """

    def __init__(self, status_code: int, msgid: str, **params: object) -> None:
        super().__init__(status_code, msgid % params if params else msgid)
        self.msgid = msgid
        self.params = params

    def translated(self, language: str) -> str:
        text = gettext(language)(self.msgid)
        return text % self.params if self.params else text


def message_of(exc: Exception, language: str) -> str:
    """What a person reads for an error: a :class:`UserError` or a ``ValueError``-like with ``msgid`` and
    ``params`` translated; any other message looked up in the catalog as it is (English if absent)."""
    msgid, params = getattr(exc, "msgid", None), getattr(exc, "params", None)
    if isinstance(msgid, str):
        text = gettext(language)(msgid)
        return text % params if params else text
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
    return gettext(language)(str(detail))


def catalog_dir(language: str) -> str:
    """``zh-CN`` -> ``zh_CN``: gettext's folder name for a language tag."""
    return language.replace("-", "_")


def check_language(language: str) -> Language:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return language  # type: ignore[return-value]  # checked against LANGUAGES above


@functools.cache
def translations(language: str) -> NullTranslations:
    """The language's catalog compiled from its committed ``.po`` (once per process); none: the msgids."""
    po = LOCALE_DIR / catalog_dir(check_language(language)) / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = pofile.read_po(fh, locale=catalog_dir(language), domain=DOMAIN)
    buffer = io.BytesIO()
    mofile.write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def gettext(language: str) -> Callable[[str], str]:
    return translations(language).gettext


def babel_locale(language: str) -> Locale:
    return Locale.parse(catalog_dir(language))


def label(language: str, table: str, value: str | None) -> str:
    """A code value shown to a person (``illegal_parking`` -> 违章停车); an unknown value stays as it is."""
    if value is None:
        return ""
    english = TABLES[table].get(value)
    return gettext(language)(english) if english is not None else value


def format_time(ts: float | None, timezone: str, language: str, fmt: str = "medium") -> str:
    """A Unix time as the site's local time, written the language's way (Babel's CLDR patterns)."""
    if ts is None:
        return ""
    when = datetime.fromtimestamp(ts, ZoneInfo(timezone))
    return format_datetime(when, fmt, tzinfo=ZoneInfo(timezone), locale=babel_locale(language))


def request_language(request: Request, site_default: str) -> str:
    """``?lang=`` first, then the cookie, then the site's language; unknown values are ignored."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return site_default if site_default in LANGUAGES else DEFAULT_LANGUAGE

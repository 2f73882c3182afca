"""The page's languages: catalogs compiled from the committed .po, chosen per site and per user, complete."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from review_kit import login

from review import i18n
from review.app import ReviewContext, create_app

REVIEW = Path(i18n.__file__).parent
ROOT = REVIEW.parent


def _extracted() -> set[str]:
    """Every msgid the templates and the review code mark, extracted as pybabel does with review/babel.cfg."""
    method_map = [("review/**.py", "python"), ("review/templates/**.html", "jinja2")]
    options = {"review/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
            str(ROOT), method_map, options, keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None,
                                    "UserError": (2,), "VerdictRejected": None}):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_marked_string_has_a_chinese_translation() -> None:
    with (REVIEW / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    missing = sorted(_extracted() - translated)
    assert not missing, f"untranslated in review/locale/zh_CN/LC_MESSAGES/messages.po: {missing}"


def test_catalog_compiles_at_start_and_translates_code_values() -> None:
    assert i18n.label("zh-CN", "type", "illegal_parking") == "违章停车"
    assert i18n.label("en", "type", "illegal_parking") == "Illegal parking"
    assert i18n.label("zh-CN", "type", "new_kind") == "new_kind"  # unknown: shown as it is, never dropped
    assert i18n.format_time(1_790_000_000.0, "Asia/Shanghai", "zh-CN") == "2026年9月21日 22:13:20"
    assert i18n.format_time(1_790_000_000.0, "Asia/Shanghai", "en").startswith("Sep 21, 2026, 10:13:20")
    with pytest.raises(ValueError, match="language must be one of zh-CN, en"):
        i18n.translations("fr")


def test_site_language_and_user_switch(ctx: ReviewContext) -> None:
    client = TestClient(create_app(replace(ctx, language="zh-CN")), follow_redirects=False)
    page = client.get("/login")
    assert '<html lang="zh-CN">' in page.text and "登录" in page.text and "Log in" not in page.text
    english = client.get("/login?lang=en")
    assert '<html lang="en">' in english.text and "Log in" in english.text
    assert english.cookies.get(i18n.LANG_COOKIE) == "en"
    assert '<html lang="en">' in client.get("/login").text  # the cookie keeps the user's choice
    assert '<html lang="zh-CN">' in client.get("/login?lang=zh-CN").text
    assert '<html lang="zh-CN">' in client.get("/login?lang=xx").text  # unknown: the cookie's, not an error


def test_english_site_stays_english(client: TestClient) -> None:
    login(client)
    assert '<html lang="en">' in client.get("/queue").text

"""The queue pages (paging without a cap, counts per facet, thumbnails, the polled rows), the verdict form's
refusals re-rendered in the operator's language, and errors as pages in that language (the API keeps JSON)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from review_kit import incident, login
from sqlalchemy import func, select

from review.app import ReviewContext, create_app
from storage import repository as repo
from storage.models import Verdict


@pytest.fixture
def many(ctx: ReviewContext) -> ReviewContext:
    """The three incidents of the template database and 120 more on one camera (more than two pages)."""
    with ctx.db.transaction() as s:
        repo.record_events(s, [incident(f"inc-m-{k:06d}", camera="cam-m", started=1_790_100_000.0 + k)
                               for k in range(120)], "patrol/v1")
    return ctx


def _row_ids(html: str) -> list[str]:
    return re.findall(r'<tr class="row[^"]*" data-id="([^"]+)"', html)


def test_queue_pages_through_every_incident_without_a_cap(many: ReviewContext) -> None:
    client = TestClient(create_app(many), follow_redirects=False)
    login(client)
    seen: list[str] = []
    url, pages = "/queue", 0
    while url:  # follow the pager's own links to the end
        html = client.get(url.replace("&amp;", "&")).text
        pages += 1
        seen += _row_ids(html)
        more = re.search(r'id="page-next" href="([^"]+)"', html)
        url = more.group(1) if more else ""
    assert pages == 3 and len(seen) == 123 == len(set(seen))
    assert seen[:2] == ["inc-m-000119", "inc-m-000118"] and seen[-1] == "inc-a-000001"  # newest first
    assert "101–123 of 123" in html and "Page 3 of 3" in html and 'id="page-prev"' in html
    api = client.get("/api/incidents", params={"page": 3, "per_page": 50})
    assert api.headers["x-total-count"] == "123" and len(api.json()) == 23


def test_counts_per_type_review_and_state(many: ReviewContext) -> None:
    client = TestClient(create_app(many), follow_redirects=False)
    token = login(client)
    client.post("/incidents/inc-m-000003/verdict", data={"verdict": "reject", "reason": "bus stop",
                                                         "csrf_token": token})
    counts = client.get("/api/queue/counts").json()
    assert counts["type"] == {"illegal_parking": 121, "street_stall": 1}  # the unreviewed ones, by type
    assert counts["status"] == {"unreviewed": 122, "rejected": 1, "all": 123}  # every status, whatever is chosen
    assert counts["state"] == {"open": 122}
    stall = client.get("/api/queue/counts", params={"type": "street_stall"}).json()
    assert stall["type"]["illegal_parking"] == 121 and stall["status"]["unreviewed"] == 1
    html = client.get("/queue").text
    assert re.search(r'data-facet="type" data-value="illegal_parking" href="[^"]*type=illegal_parking[^"]*">'
                     r'Illegal parking <b>121</b>', html)
    assert re.search(r'data-facet="status" data-value="rejected"[^>]*>rejected <b>1</b>', html)


def test_rows_are_polled_and_show_thumbnails(ctx: ReviewContext) -> None:
    client = TestClient(create_app(ctx), follow_redirects=False)
    login(client)
    page = client.get("/queue").text
    src = re.search(r'id="queue-live" data-src="([^"]+)"', page)
    assert src is not None
    rows = client.get(src.group(1).replace("&amp;", "&"))
    assert rows.status_code == 200 and rows.headers["cache-control"] == "no-store"
    assert "<html" not in rows.text and _row_ids(rows.text) == _row_ids(page)
    # the snapshot is the thumbnail, served by the evidence route; an incident without one says so
    assert '<img class="thumb" src="/evidence/inc-a-000001/snapshot.jpg"' in rows.text
    assert rows.text.count('class="no-thumb"') == 2
    version = re.search(r'class="live" data-version="(\w+)"', rows.text)
    with ctx.db.transaction() as s:  # a new incident: the polled part changes (new row, new version)
        repo.record_events(s, [incident("inc-n-000009", started=1_790_000_900.0)], "patrol/v1")
    again = client.get(src.group(1).replace("&amp;", "&")).text
    assert _row_ids(again)[0] == "inc-n-000009"
    assert version is not None and f'data-version="{version.group(1)}"' not in again


def test_reject_without_reason_is_refused_on_the_form_in_chinese(ctx: ReviewContext) -> None:
    client = TestClient(create_app(replace(ctx, language="zh-CN")), follow_redirects=False)
    token = login(client)
    r = client.post("/incidents/inc-b-000002/verdict", data={"verdict": "reject", "reason": "   ",
                                                             "csrf_token": token, "qs": "camera=cam-b"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert 'id="verdict-form"' in r.text and "驳回必须填写理由（理由用于调整规则）" in r.text
    assert re.search(r'id="reason-error" role="alert">驳回必须填写理由', r.text)  # shown, not hidden
    assert 'name="qs" value="camera=cam-b&amp;status=unreviewed"' in r.text  # the queue it came from is kept
    with ctx.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Verdict)) == 0
    english = client.post("/incidents/inc-b-000002/verdict?lang=en", data={"verdict": "reject",
                                                                           "csrf_token": token})
    assert "a rejection needs a reason (it is used to tune the rules)" in english.text
    api = client.post("/api/incidents/inc-b-000002/verdict", json={"verdict": "reject"},
                      headers={"X-CSRF-Token": token})
    assert api.status_code == 422
    assert api.json()["detail"] == "a rejection needs a reason (it is used to tune the rules)"


@pytest.mark.parametrize(("url", "status", "zh"), [
    ("/incidents/inc-nope-0000", 404, "没有事件 inc-nope-0000。"),
    ("/queue?since=yesterday", 422, "since：应为日期和时间"),
    ("/queue?status=maybe", 422, "审核状态必须是以下之一：unreviewed, confirmed, rejected, all"),
    ("/queue?page=abc", 422, "page: 应为整数"),
    ("/queue?page=0", 422, "页码从 1 开始"),
    ("/no-such-page", 404, "未找到"),
    ("/evidence/inc-a-000001/nothing.jpg", 404, "没有该证据文件"),
])
def test_errors_are_pages_in_the_users_language(ctx: ReviewContext, url: str, status: int, zh: str) -> None:
    client = TestClient(create_app(replace(ctx, language="zh-CN")), follow_redirects=False)
    login(client)
    r = client.get(url, headers={"Accept": "text/html"})
    assert r.status_code == status and r.headers["content-type"].startswith("text/html"), r.text[:200]
    assert '<html lang="zh-CN">' in r.text and zh in r.text and '{"detail"' not in r.text


def test_the_api_keeps_json_errors_in_english(ctx: ReviewContext) -> None:
    client = TestClient(create_app(replace(ctx, language="zh-CN")), follow_redirects=False)
    login(client)
    r = client.get("/api/incidents", params={"since": "yesterday"})
    assert r.status_code == 422 and r.json()["detail"].startswith("since: expected a date and time")
    assert client.get("/api/incidents/inc-nope-0000").json() == {"detail": "no incident 'inc-nope-0000'"}

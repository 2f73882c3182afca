"""Stream passwords never reach a log line, in text or JSON form, in messages, extras or tracebacks."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.redact import redact_text, redact_url
from patrol.logs import JsonFormatter, RedactingFilter, TextFormatter

SECRET = "S3cret:Pass"


@pytest.mark.parametrize(("url", "expected"), [
    ("rtsp://admin:pw@10.0.0.1:554/ch1", "rtsp://admin:***@10.0.0.1:554/ch1"),
    ("rtsp://10.0.0.1/ch1", "rtsp://10.0.0.1/ch1"),
    ("rtsp://admin@10.0.0.1/ch1", "rtsp://admin:***@10.0.0.1/ch1"),
    ("/data/clip.mp4", "/data/clip.mp4"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_finds_urls_anywhere() -> None:
    text = "open failed for rtsp://u:p4ss@h/x and http://a:b@c/ (timeout)"
    assert redact_text(text) == "open failed for rtsp://u:***@h/x and http://a:***@c/ (timeout)"


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_log_records_are_redacted(formatter: logging.Formatter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.redact")
    logger.handlers[:] = [handler]
    logger.propagate = False
    url = f"rtsp://admin:{SECRET}@127.0.0.1:8554/cam"
    logger.warning("cannot open %s", url, extra={"source": url})
    try:
        raise ConnectionError(f"refused: {url}")
    except ConnectionError:
        logger.exception("reconnect failed")
    out = stream.getvalue()
    assert SECRET not in out and "S3cret" not in out
    assert "admin:***@127.0.0.1" in out
    if isinstance(formatter, JsonFormatter):
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert lines[0]["source"] == "rtsp://admin:***@127.0.0.1:8554/cam"
        assert "ConnectionError" in lines[1]["exc"]

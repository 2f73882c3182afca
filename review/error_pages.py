"""Errors a person meets in the HTML UI are pages in their language, never raw JSON.

:func:`install` registers exception handlers: an HTTP error (404, 403, 422 ...), a request that fails
validation, or an unexpected failure is rendered as ``error.html`` in the request's language
(:func:`review.deps.language_of`). The JSON API (``/api/...``) and clients that ask for JSON only keep
FastAPI's JSON answers, with the English message.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from review import i18n
from review.deps import language_of, render, translate

log = logging.getLogger("patrol.review")

TITLES = {
    400: i18n.N_("The request was refused"),
    401: i18n.N_("Please log in"),
    403: i18n.N_("Not allowed"),
    404: i18n.N_("Not found"),
    405: i18n.N_("Not allowed"),
    422: i18n.N_("Some input is not valid"),
    500: i18n.N_("Something went wrong"),
}
GENERIC = i18n.N_("The request could not be completed.")
FIX_INPUT = i18n.N_("Please correct this and try again:")
FOREIGN_MESSAGES = (
    i18n.N_("Not Found"), i18n.N_("Method Not Allowed"), i18n.N_("Field required"), i18n.N_("login required"),
    i18n.N_("CSRF token missing or wrong; reload the page"), i18n.N_("no such evidence file"),
    i18n.N_("path refused: outside the evidence store"), i18n.N_("Wrong user name or password."),
    i18n.N_("Your role may not open this page."),
    i18n.N_("Input should be a valid integer, unable to parse string as an integer"),
)
"""Messages raised elsewhere (Starlette, pydantic, other routers) that a person may read on an error page:
marked here so the catalogs translate them (:func:`review.i18n.message_of` looks the text up as it is)."""


def wants_json(request: Request) -> bool:
    """The JSON API, or a client that accepts JSON and not HTML."""
    if request.url.path.startswith(("/api/", "/openapi.json")):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_page(request: Request, status: int, message: str, details: list[str] | None = None) -> Response:
    _ = translate(request)
    title = _(TITLES.get(status, TITLES[400] if status < 500 else TITLES[500]))
    return render(request, "error.html", status=status, title=title, message=message, details=details or [],
                  code=status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if wants_json(request):
        return await http_exception_handler(request, exc)
    message = i18n.message_of(exc, language_of(request))
    response = error_page(request, exc.status_code, message)
    for name, value in (exc.headers or {}).items():
        response.headers.setdefault(name, value)
    return response


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if wants_json(request):
        return await request_validation_exception_handler(request, exc)
    _ = translate(request)
    details = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('body', 'query', 'path'))}: "
               f"{_(str(e.get('msg', '')))}" for e in exc.errors()]
    return error_page(request, 422, _(FIX_INPUT), details)


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("review page failed: %s", exc, exc_info=exc, extra={"path": request.url.path})
    if wants_json(request):
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": "internal error"}, status_code=500)
    return error_page(request, 500, translate(request)(GENERIC))


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)

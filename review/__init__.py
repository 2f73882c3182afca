"""Operators' review page: FastAPI app, Jinja2 templates, static files."""

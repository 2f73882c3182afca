"""The review page's routers, one per concern; :func:`review.app.create_app` includes them all.

``auth`` (login, logout), ``pages`` (queue and incident pages), ``verdicts`` (the confirm / reject
form), ``files`` (evidence files, from the evidence store only), ``api`` (the JSON API), ``metrics`` (Prometheus).
What they share (context, session, CSRF, rendering) is in :mod:`review.deps`.
"""

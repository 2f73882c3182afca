"""``python -m core.schema`` rewrites the committed schema file from the model."""

from core.schema import SCHEMA_FILE, render

SCHEMA_FILE.write_text(render(), encoding="utf-8")
print(f"wrote {SCHEMA_FILE}")

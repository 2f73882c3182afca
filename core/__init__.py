"""Shared contracts at the bottom of the stack: errors, credential redaction, the core types (Frame,
Detections, Track), the incident event and its JSON Schema, COCO names, the data-asset registry and
first-class fakes of these types. Imports nothing else of ours (checked by import-linter)."""

"""Rules, the incident lifecycle, and the way incidents leave the pipeline (outbox, MQTT)."""

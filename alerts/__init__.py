"""What carries incidents out of the pipeline: the outbox, the transport (MQTT), the verifier."""

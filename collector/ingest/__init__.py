"""Ingest: MQTT in (codec, session), validation, batches committed then acknowledged."""

"""Inbound mail: receivers, parsing, classification, threading and the ingest pipeline."""

"""Responders: everything the help desk sends (outbox relay, Dramatiq actors, MIME, SMTP)."""

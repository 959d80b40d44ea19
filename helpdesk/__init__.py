"""helpdesk: the core of an email-first help desk (domain, storage, CLI); no network I/O."""

__version__ = "0.1.0"

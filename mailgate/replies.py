"""Every SMTP reply the gateway gives, as named constants (a test checks their enhanced codes)."""

from __future__ import annotations

R250_OK = "250 2.1.5 Recipient ok"
R250_QUEUED = "250 2.0.0 Queued as {ref}"
R250_STORED = "250 2.0.0 Stored"
R421_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
R421_TOO_MANY_FROM_CLIENT = "421 4.7.0 Too many connections from your address, try again later"
R421_DATA_TIMEOUT = "421 4.4.2 Timeout waiting for message data, closing connection"
R451_TEMPFAIL = "451 4.3.0 Temporary local problem, please retry"
R452_TOO_MANY = "452 4.5.3 Too many recipients"
R550_RELAY = "550 5.7.1 Relaying denied: recipient not accepted here"
R552_TOO_BIG = "552 5.3.4 Message exceeds the size limit"
R500_LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
R554_NO_RCPT = "554 5.5.1 No valid recipients"

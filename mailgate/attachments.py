"""Attachments of an inbound message into the blob store, as rows the ticket service can attach."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from helpdesk.storage import BlobStore
from helpdesk.tickets import NewAttachment
from mailgate.parse import InboundAttachment


async def store_attachments(store: BlobStore,
                            parts: Sequence[InboundAttachment]) -> list[NewAttachment]:
    """Write each part; the caller syncs the store before the transaction that refers to it
    commits (large parts are fsynced as they are written)."""
    stored = []
    for part in parts:
        if part.large is not None:  # decoded from the raw message as it is written
            sha, size = await asyncio.to_thread(store.put_chunks, part.chunks())
        else:
            sha, size = await asyncio.to_thread(store.put, part.payload, durable=False), len(
                part.payload)
        stored.append(NewAttachment(
            filename=part.filename, content_type=part.content_type, size=size,
            sha256=sha, is_inline=part.is_inline, content_id=part.content_id))
    return stored

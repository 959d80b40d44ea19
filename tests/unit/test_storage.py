"""The blob store: content-addressed, durable, deduplicated."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from helpdesk.storage import BlobStore


def test_put_returns_the_sha256_and_get_gives_the_bytes_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"From: a@b\r\n\r\nhello\r\n"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get(digest) == data
    assert store.path_for(digest).parent.parent.name == digest[:2]


def test_identical_content_is_stored_once_and_no_temp_files_remain(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    a, b = store.put(b"same"), store.put(b"same")
    assert a == b
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [a]


def test_path_for_refuses_anything_but_a_digest(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BlobStore(tmp_path).path_for("../../etc/passwd")

"""Reports as text: the table and CSV forms of the JSON (`helpdesk.reports`), pure."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` as ``[("a.b", 1)]``; lists of rows stay whole (pure)."""
    if isinstance(data, dict):
        out: list[tuple[str, Any]] = []
        for key, value in data.items():
            out += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, data)]


def _rows(data: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """The one list of rows a section holds (agents, channels), if it is one."""
    lists = [(k, v) for k, v in data.items()
             if isinstance(v, list) and v and isinstance(v[0], dict)]
    return lists[0] if len(lists) == 1 and len(data) == 1 else None


def as_table(data: dict[str, Any]) -> str:
    rows = _rows(data)
    if rows is not None:
        _, items = rows
        keys = list(items[0])
        widths = {k: max(len(k), *(len(cell(r[k])) for r in items)) for k in keys}
        lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
        lines += ["  ".join(cell(r[k]).ljust(widths[k]) for k in keys) for r in items]
        return "\n".join(lines)
    pairs = [(k, v) for k, v in flatten(data) if not isinstance(v, list)]
    width = max((len(k) for k, _ in pairs), default=0)
    lines = [f"{k.ljust(width)}  {cell(v)}" for k, v in pairs]
    for key, value in flatten(data):
        if isinstance(value, list) and value:
            lines += ["", f"{key}:"] + [f"  {json.dumps(v, ensure_ascii=False)}"
                                         for v in value]
    return "\n".join(lines)


def as_csv(data: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows = _rows(data)
    if rows is not None:
        _, items = rows
        writer.writerow(list(items[0]))
        writer.writerows([[r[k] for k in items[0]] for r in items])
    else:
        writer.writerow(["figure", "value"])
        writer.writerows([(k, "" if v is None else v) for k, v in flatten(data)
                          if not isinstance(v, list)])
    return buffer.getvalue()


def cell(value: Any) -> str:
    return "no data" if value is None else str(value)

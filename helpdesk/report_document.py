"""Reports as documents: one HTML file with inline SVG charts, or a PDF, from one layout.

The charts are matplotlib's: the one library that draws both SVG (inlined in the HTML:
self-contained, no JavaScript, readable offline) and multi-page PDF (``PdfPages``: each
chart and each table on a page of its own, so page breaks fall between them), with
print-quality text and axes. It is an optional dependency (``helpdesk[reports]``), loaded
only for ``--format html|pdf``, so the mail paths never pay for it.

The document is built from the JSON form of the report (`helpdesk.reports`): the same
figures, arranged.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from helpdesk.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ChartMaker = Callable[[dict[str, Any]], "Figure | None"]
INK, ACCENT, GOOD, BAD = "#1f2933", "#1f6feb", "#2da44e", "#cf222e"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("charts need matplotlib: pip install 'helpdesk[reports]'") from None
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "helpdesk"})
    return plt


def _figure(title: str) -> tuple[Figure, Any]:
    plt = _pyplot()
    fig: Figure
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.set_title(title, loc="left", fontsize=11, color=INK)
    return fig, ax


def _bars(title: str, labels: list[str], values: list[float], *, horizontal: bool = False,
          color: str = ACCENT, unit: str = "") -> Figure | None:
    if not labels:
        return None
    fig, ax = _figure(title)
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color=color)
    else:
        ax.bar(labels, values, color=color)
        if len(labels) > 8:
            ax.tick_params(axis="x", labelrotation=45)
    if unit:
        (ax.set_xlabel if horizontal else ax.set_ylabel)(unit)
    fig.tight_layout()
    return fig


def _line(title: str, labels: list[str], values: list[float], unit: str) -> Figure | None:
    if not labels:
        return None
    fig, ax = _figure(title)
    ax.plot(labels, values, marker="o", color=ACCENT)
    ax.set_ylabel(unit)
    if len(labels) > 8:
        ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    return fig


def _volume(r: dict[str, Any]) -> Figure | None:
    v = r.get("trends", {}).get("volume", [])
    return _bars(f"Tickets opened per {r['trends']['per']}" if v else "",
                 [x["period"] for x in v], [x["tickets"] for x in v], unit="tickets")


def _by_type(r: dict[str, Any]) -> Figure | None:
    t = r.get("trends", {})
    split = t.get("by_type") or t.get("by_category") or {}
    return _bars("Tickets by type", list(split), list(split.values()), horizontal=True)


def _by_organization(r: dict[str, Any]) -> Figure | None:
    split = r.get("trends", {}).get("by_organization", {})
    return _bars("Tickets by organization", list(split), list(split.values()),
                 horizontal=True)


def _resolution(r: dict[str, Any]) -> Figure | None:
    v = r.get("trends", {}).get("resolution_mean", [])
    return _line("Mean resolution time", [x["period"] for x in v],
                 [x["minutes"] for x in v], "minutes")


def _sla(r: dict[str, Any]) -> Figure | None:
    rows = r.get("sla", {}).get("by_priority", [])
    rows = [x for x in rows if x["percent"] is not None]
    labels = [f"{x['name']} {x['clock'].replace('_', ' ')}" for x in rows]
    return _bars("SLA compliance (percent met)", labels, [x["percent"] for x in rows],
                 horizontal=True, color=GOOD, unit="percent")


def _workload(r: dict[str, Any]) -> Figure | None:
    rows = r.get("agents", {}).get("agents", [])
    return _bars("Team workload (open tickets now)", [x["agent"] for x in rows],
                 [x["open_load"] for x in rows], horizontal=True)


def _csat(r: dict[str, Any]) -> Figure | None:
    v = r.get("csat", {}).get("trend", [])
    return _line("Satisfaction per week (average of 1-5)", [x["week"] for x in v],
                 [x["average"] for x in v], "average rating")


CHARTS: tuple[ChartMaker, ...] = (_volume, _by_type, _by_organization, _resolution, _sla,
                                  _workload, _csat)


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    _pyplot().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or doctype


def _widgets(figures: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not figures:
        return []
    return [("Open tickets", figures["open"]), ("SLA breaches today",
                                                figures["sla_breaches_today"]),
            ("Overdue tickets", figures["overdue"])]


STYLE = ("body{font-family:system-ui,sans-serif;color:#1f2933;max-width:60rem;"
         "margin:2rem auto;padding:0 1rem}"
         ".widgets{display:flex;gap:1rem}.widget{border:1px solid #d0d7de;"
         "border-radius:6px;padding:.8rem 1.2rem}.widget b{display:block;font-size:2rem}"
         "figure{margin:1.5rem 0}svg{max-width:100%;height:auto}"
         "pre{background:#f6f8fa;padding:1rem;overflow-x:auto}"
         "@media print{figure,pre{break-inside:avoid}}")


def to_html(report: dict[str, Any], *, title: str, tables: dict[str, str],
            widgets: dict[str, Any] | None = None, fragment: bool = False) -> str:
    """One self-contained HTML file: the widgets, every chart as inline SVG, the tables.

    ``fragment``: only what goes inside ``<body>`` (for a mail, which has its own frame).
    """
    e = html.escape
    parts = [f"<h1>{e(title)}</h1>"]
    boxes = _widgets(widgets)
    if boxes:
        parts.append('<div class="widgets">' + "".join(
            f'<div class="widget"><b>{e(str(v))}</b>{e(k)}</div>' for k, v in boxes)
            + "</div>")
    for make in CHARTS:
        fig = make(report)
        if fig is not None:
            parts.append(f'<figure class="chart">{_svg(fig)}</figure>')
    for name, table in tables.items():
        parts.append(f"<h2>{e(name)}</h2><pre>{e(table)}</pre>")
    if fragment:
        return "\n".join(parts)
    return "\n".join(["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
                      f"<title>{e(title)}</title>", f"<style>{STYLE}</style></head><body>",
                      *parts, "</body></html>"])


def to_pdf(report: dict[str, Any], *, title: str, tables: dict[str, str],
           widgets: dict[str, Any] | None = None) -> bytes:
    """The same document as a PDF: a title page with the widgets, a page per chart, a
    page (or more) per table."""
    plt = _pyplot()
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": title, "Creator": "helpdesk"}) as pdf:
        page = plt.figure(figsize=(8.27, 11.69))  # A4 portrait
        page.text(0.08, 0.92, title, fontsize=18, color=INK)
        for n, (label, value) in enumerate(_widgets(widgets)):
            page.text(0.08 + n * 0.3, 0.82, str(value), fontsize=28, color=ACCENT)
            page.text(0.08 + n * 0.3, 0.79, label, fontsize=10, color=INK)
        pdf.savefig(page)
        plt.close(page)
        for make in CHARTS:
            fig = make(report)
            if fig is not None:
                fig.set_size_inches(8.27, 4.5)
                pdf.savefig(fig)
                plt.close(fig)
        for name, table in tables.items():
            lines = table.splitlines() or [""]
            for start in range(0, len(lines), 70):
                page = plt.figure(figsize=(8.27, 11.69))
                page.text(0.06, 0.95, name, fontsize=13, color=INK)
                page.text(0.06, 0.92, "\n".join(lines[start:start + 70]), fontsize=6.5,
                          family="monospace", va="top")
                pdf.savefig(page)
                plt.close(page)
    return buffer.getvalue()

"""Small HTML pieces. Every text that comes from a file goes through :func:`esc`; the functions
here take already-built HTML only where the parameter says ``html``."""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def esc(value) -> str:
    """Text as HTML (quotes too, so it is also safe inside attribute values).

    >>> esc('<script>alert("x")</script>')
    '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
    """
    return html.escape("" if value is None else str(value), quote=True)


def slug(text: str) -> str:
    """An id for an element: letters, digits, ``-`` and ``_`` only.

    >>> slug("runs/demo_grpo (eval)")
    'runs-demo_grpo-eval'
    """
    return re.sub(r"[^A-Za-z0-9_]+", "-", str(text)).strip("-") or "x"


def fmt(value, digits: int = 3) -> str:
    """A number for a table: ints with thousands separators, small floats with ``digits``
    decimals, large ones with one; other values as text.

    >>> [fmt(1234567), fmt(0.45175), fmt(526.33), fmt(None), fmt(True), fmt(float("nan"))]
    ['1,234,567', '0.452', '526.3', '', 'yes', 'nan']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:,.{digits}f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def fmt_ci(value, ci=None) -> str:
    """``0.452 [0.420, 0.482]`` (the interval only when it is a pair of numbers)."""
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci):
        return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"
    return fmt(value)


class Html(str):
    """Text that is already HTML (built here from escaped parts): :func:`table` keeps it as is."""


def cell(value) -> str:
    return value if isinstance(value, Html) else esc(value)


def table(headers: list[str] | None, rows: list[list], cls: str = "data", numeric_from: int = 1) -> str:
    """A table of cells (text is escaped, :class:`Html` kept); columns from ``numeric_from`` on
    are right-aligned; ``headers`` None: no header row."""
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if i >= numeric_from else "txt"}">{cell(c)}</td>' for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<div class="table-wrap"><table class="{esc(cls)}">{head}<tbody>{body}</tbody></table></div>'


def kv_table(pairs: list[tuple[str, object]]) -> str:
    """A two-column key / value table (values formatted with :func:`fmt`)."""
    return table(None, [[k, fmt(v)] for k, v in pairs], cls="data kv")


def panels(items: list[tuple[str, str]]) -> str:
    """Titled blocks side by side (they wrap on narrow screens); ``items``: (title, HTML)."""
    body = "".join(f'<div class="panel"><h4>{esc(t)}</h4>{h}</div>' for t, h in items if h)
    return f'<div class="panels">{body}</div>' if body else ""


def details(title_html: str, body_html: str, open_: bool = True, cls: str = "", id_: str = "") -> str:
    """A collapsible block (``<details>``); ``title_html`` is HTML."""
    attrs = (f' id="{esc(id_)}"' if id_ else "") + (f' class="{esc(cls)}"' if cls else "") + (" open" if open_ else "")
    return f"<details{attrs}><summary>{title_html}</summary><div class=\"body\">{body_html}</div></details>"


def png_data_uri(path: Path, max_bytes: int) -> tuple[str | None, str | None]:
    """``(data URI, None)`` for a PNG file, or ``(None, one-line note)`` when it is unreadable,
    not a PNG or larger than ``max_bytes``."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return None, f"{path}: skipped, {size:,} bytes is over the {max_bytes:,}-byte limit for an image"
        data = path.read_bytes()
    except OSError as err:
        return None, f"{path}: unreadable ({err.strerror or err})"
    if not data.startswith(PNG_MAGIC):
        return None, f"{path}: skipped, not a PNG file"
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), None


def figure(uri: str, caption: str) -> str:
    """An embedded image with its caption (``uri``: a ``data:`` URI from :func:`png_data_uri`)."""
    img = f'<img src="{esc(uri)}" alt="{esc(caption)}">'
    return f'<figure class="plot">{img}<figcaption>{esc(caption)}</figcaption></figure>'


def note_list(notes: list[str]) -> str:
    """The one-line notes about skipped files."""
    if not notes:
        return ""
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"


def chip(text: str, cls: str) -> str:
    return f'<span class="chip {esc(cls)}">{esc(text)}</span>'

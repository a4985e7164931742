"""What every report renders the same way: tables as Markdown and as HTML, figures as inline
PNG images, numbers in short form."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def short(value: float) -> str:
    """A number in four significant digits, thousands separated: ``12,350``, ``0.1235``."""
    return f"{value:,.4g}"


def markdown_table(
    head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> list[str]:
    """A Markdown table's lines, the columns numbered in ``right`` aligned right; a ``|`` in a
    cell is escaped, so that it stays one cell."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "".join("---:|" if i in right else "---|" for i in range(len(head)))
    return [line(head), rule, *(line(r) for r in rows)]


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table, every cell escaped."""
    e = html.escape
    h = "".join(f"<th>{e(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def inline_png(fig: Figure, alt: str) -> str:
    """An ``<img>`` holding the figure as PNG (110 dpi) in the page itself; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

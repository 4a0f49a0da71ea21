"""Reports as self-contained HTML: the small Markdown renderer the evaluation and validity reports share."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping


def markdown_to_html(md: str, pngs: Mapping[str, bytes], names: Mapping[str, str], title: str = "semcontrib report"
                     ) -> str:
    """A minimal renderer for the Markdown the reports write (headings, lists, tables, images).

    ``pngs`` maps a key to PNG bytes and ``names`` the key to the file name the Markdown links; those
    images are embedded, so the HTML is one self-contained file. All text is escaped.
    """
    inv = {v: k for k, v in names.items()}
    body: list[str] = []
    table: list[list[str]] = []

    def close_table() -> None:
        if not table:
            return
        head, *rest = table
        body.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>")
        body.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rest)
        body.append("</tbody></table>")
        table.clear()

    def inline(s: str) -> str:
        s = html.escape(s)
        parts = s.split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            table.append([inline(c) for c in cells])
            continue
        close_table()
        if line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            src = src.rstrip(")")
            key = inv.get(src)
            if key is not None and key in pngs:
                data = base64.b64encode(pngs[key]).decode()
                body.append(f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    close_table()
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

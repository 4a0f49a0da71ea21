"""The shared Markdown-to-HTML report renderer: tables, images embedded, every text escaped."""

from __future__ import annotations

from semcontrib.report import markdown_to_html


def test_renders_and_escapes() -> None:
    md = "# Title <b>\n\n- item **bold**\n\n| a | b |\n|---|---|\n| <script> | 1 |\n\n![plot](p.png)\n"
    html = markdown_to_html(md, {"p": b"\x89PNG"}, {"p": "p.png"}, title="t <x>")
    assert "<h1>Title &lt;b&gt;</h1>" in html and "<li>item <b>bold</b></li>" in html
    assert "<td>&lt;script&gt;</td>" in html and "<script>" not in html
    assert 'src="data:image/png;base64,iVBORw=="' in html and "<title>t &lt;x&gt;</title>" in html

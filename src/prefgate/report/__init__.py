"""Reports as self-contained HTML pages (jinja2 templates, matplotlib plots inlined as PNG data URIs).

`html.render(template, **context)` and `html.write_html` are shared by every page; `plots` turns plain
lists into embedded images; one module per page kind builds its context (`audit.audit_html(report)`).
Pages read only the JSON reports, never the data, so any saved report can be rendered again.
"""

from prefgate.report.audit import audit_html, write_audit_html
from prefgate.report.html import render, write_html

__all__ = ["audit_html", "render", "write_audit_html", "write_html"]

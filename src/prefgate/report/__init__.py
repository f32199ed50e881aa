"""Reports as self-contained HTML pages (jinja2 templates, matplotlib plots inlined as PNG data URIs).

`html.render(template, **context)` and `html.write_html` are shared by every page; `plots` turns plain
lists into embedded images; one module per page kind builds its context from that stage's JSON report:
`audit.audit_html(report)`, `diagnose.diagnose_html(report)`, `sweep.sweep_html(report)`, each with a
`write_*_html(report, path)`. Templates are files under `templates/`, each extending `base.html.j2`.
Pages read only the JSON reports, never the data, so any saved report can be rendered again.
"""

from prefgate.report.audit import audit_html, write_audit_html
from prefgate.report.diagnose import diagnose_html, write_diagnose_html
from prefgate.report.html import render, write_html
from prefgate.report.sweep import sweep_html, write_sweep_html

__all__ = ["audit_html", "diagnose_html", "render", "sweep_html", "write_audit_html", "write_diagnose_html",
           "write_html", "write_sweep_html"]

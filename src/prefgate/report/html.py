"""Render report pages: jinja2 templates from `prefgate/report/templates`, written as one self-contained file.

Every page extends `base.html.j2`, which carries the CSS inline, a Content-Security-Policy that allows
only inline styles and scripts and `data:` images (so a page that tried to load anything from elsewhere
would show it as a console error instead of silently depending on the network), and a small script that
reports any image that failed to decode as a console error.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from prefgate.reportio import write_text


@cache
def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    autoescape = select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True)
    env = Environment(loader=PackageLoader("prefgate.report", "templates"), autoescape=autoescape,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env


def render(template: str, *, filters: dict[str, Any] | None = None, **context: Any) -> str:
    """Render a template of `prefgate/report/templates`; `filters` are added for this page's own formats."""
    env = environment()
    if filters:
        env = env.overlay()
        env.filters.update(filters)
    return env.get_template(template).render(**context)


def write_html(text: str, path: str | Path) -> Path:
    """Write `text` to `path` atomically (a temporary file in the same folder, renamed into place)."""
    return write_text(text, path)

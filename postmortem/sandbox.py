"""A user's own template for the report (`scan --template FILE`), rendered in jinja2's sandbox.

A template file is code that someone else may have written (shared in a team, copied from an
issue): it runs in `SandboxedEnvironment`, where it can read the report's data and call the
same filters as the built-in templates, but not reach Python internals (`__class__`,
`__globals__`, `os`), and `range` is capped. It sees what `report.md.j2` sees, plus plain data:

    s          the UI words of the report's language (s.symptom, s.fix, ...)
    sources    the names of the logs scanned
    entries    one per incident: entry.incident, entry.number, entry.cause_number
    incidents  the incidents as the JSON report has them (plain dicts: signature, title, source, line, ...)
    report     the Report itself; lang: its language

It may `{% include %}` the built-in partials (`incident.md.j2`) and files beside it. The report
is redacted before it gets there (unless --no-redact), as for the built-in formats.
"""
from __future__ import annotations

from pathlib import Path

import jinja2
import jinja2.filters
from jinja2.sandbox import SandboxedEnvironment

from . import resources
from .model import Report
from .render import incident_to_dict, numbered_entries, template_environment
from .texts import ui_strings


class TemplateError(Exception):
    """A user template that cannot be loaded or rendered; the message names the file and why."""


def user_environment(directory: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader([
            jinja2.FileSystemLoader(str(directory)),
            jinja2.FileSystemLoader(str(resources.templates_dir())),
        ]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    # The built-in templates' own filters (continue_item, code_span, ...), whatever they grow to.
    env.filters.update({name: f for name, f in template_environment().filters.items()
                        if name not in jinja2.filters.FILTERS})
    return env


def render_user_template(report: Report, path: str | Path) -> str:
    """The report rendered with the template at `path`, in the sandbox."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    env = user_environment(path.parent)
    try:
        template = env.from_string(source)
        template.filename = str(path)
        return template.render(
            s=ui_strings(report.lang), sources=list(report.sources), entries=numbered_entries(report.incidents),
            incidents=[incident_to_dict(i) for i in report.incidents], report=report, lang=report.lang,
        )
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename if exc.filename and exc.filename != "<template>" else str(path)
        raise TemplateError(f"{where}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{path}: no template {exc.name!r} to include (beside it, or built in)") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"{path}: not allowed in a template: {exc}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{path}: {exc.message or exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:
        raise TemplateError(f"{path}: {type(exc).__name__}: {exc}") from None

"""postmortem: turn the log of a failed ML training run into a sourced debugging-journal entry.

    >>> import postmortem
    >>> report = postmortem.scan("run.log")
    >>> print(postmortem.render_markdown(report))
"""
__version__ = "0.1.0"  # before the imports: cache.py keys its entries with it

from .knowledge import load_knowledge_base
from .model import Incident, Report
from .render import render_json, render_markdown
from .scan import scan, scan_text

__all__ = ["Incident", "Report", "load_knowledge_base", "render_json", "render_markdown", "scan",
           "scan_text", "__version__"]

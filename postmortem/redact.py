"""Secrets and user names never leave the tool: redact them from everything we write."""
from __future__ import annotations

import dataclasses

import regex

from .model import Frame, Incident

# (kind, pattern): each match becomes `<redacted:kind>`.
SECRET_PATTERNS = (
    ("private-key", regex.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----")),
    ("hf-token", regex.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("api-key", regex.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}\b")),
    ("github-token", regex.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("aws-access-key", regex.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("bearer-token", regex.compile(r"(?i)(?<=\bAuthorization:\s*Bearer\s+)[A-Za-z0-9._~+/\-]+=*")),
    ("url-password", regex.compile(r"(?<=://[^/\s:@]+:)[^/\s@]+(?=@)")),
    ("url-token", regex.compile(r"(?i)(?<=[?&](?:token|access_token|api_key|apikey|key|sig)=)[^&\s]+")),
)
HOME_PATTERNS = (
    (regex.compile(r"/home/[^/\s'\"]+"), "~"),
    (regex.compile(r"/Users/[^/\s'\"]+"), "~"),
    (regex.compile(r"[A-Za-z]:\\Users\\[^\\\s'\"]+"), "~"),
)


def redact_text(text: str) -> str:
    for kind, pattern in SECRET_PATTERNS:
        text = pattern.sub(f"<redacted:{kind}>", text)
    for pattern, replacement in HOME_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_incident(incident: Incident) -> Incident:
    changes: dict[str, object] = {}
    for name in ("title", "evidence", "symptom", "cause", "fix", "lesson", "source"):
        changes[name] = redact_text(getattr(incident, name))
    changes["vars"] = {k: redact_text(v) for k, v in incident.vars.items()}
    changes["context"] = tuple(redact_text(c) for c in incident.context)
    if incident.location is not None:
        loc: Frame = incident.location
        changes["location"] = dataclasses.replace(loc, filename=redact_text(loc.filename), line=redact_text(loc.line))
    return dataclasses.replace(incident, **changes)

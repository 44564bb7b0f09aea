"""Secrets and user names never leave the tool: redact them from everything we write.

Runs on the report, after grouping and before rendering, so that the Markdown draft, the JSON
and the journal entries all get the same redacted text. Each secret becomes `<redacted:KIND>`
(the draft still says what was there); the user name in a home path becomes `~`
(`/home/alice/proj/train.py` → `~/proj/train.py`). `/root` is kept: it names no one, and in a
container every path is under it.

Three kinds of rules, in this order:
- shapes that are secrets wherever they appear (`hf_...`, `sk-proj-...`, `ghp_...`, `AKIA...`,
  private key blocks, JWTs);
- values that are secrets by their context (`WANDB_API_KEY=...`, `wandb login ...`, netrc
  passwords, kaggle.json's `"key"`, `https://user:pass@`, `?token=`, `Authorization: Bearer`,
  `password: ...`), where the same characters elsewhere (a commit hash, a UUID) are kept;
- home directories.
Every pattern is linear: no nested quantifiers, and every repeated class stops at a delimiter.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import regex

from .model import Incident, Report

# Fields that are identifiers of ours, never user text.
KEEP_FIELDS = frozenset({"signature", "fingerprint", "explained_by", "severity", "category", "references"})
MIN_SECRET_LENGTH = 6  # a shorter value after `password=` is a placeholder or a flag, not a secret
LONG_SECRET_LENGTH = 20  # values this long count as secrets even without a digit
MAX_NAME_LENGTH = 60

_TOKEN_CHARS = r"[A-Za-z0-9_\-]"
_ALNUM_AFTER = r"(?![A-Za-z0-9])"
_NOT_AFTER_WORD = r"(?<![\w-])"


@dataclasses.dataclass(frozen=True)
class Rule:
    kind: str  # what the draft says instead: `<redacted:kind>`; "" for a home path
    pattern: _LazyRegex  # compiled on first use
    needle: tuple[str, ...] = ()  # the rule can only match text holding one of these (case-insensitive)
    # Given the match, the kind to name, or None to keep the text (a near-miss).
    judge: Callable[[regex.Match], str | None] | None = None
    # Assignments: `pattern` matches a name and its `=`/`:`; the value after it is matched by
    # this, and judged by `looks_secret`. The value is not part of the match, so that a value
    # that is not a secret can still be the name of the next assignment (`Error: KEY=...`).
    value: _LazyRegex | None = None


class _LazyRegex:
    """A rule's regex, compiled the first time a text holds the rule's needle: most drafts hold no
    secret at all, and compiling every rule cost a tenth of a small scan's start-up."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, *args) -> None:
        self._args = args
        self._compiled: regex.Pattern | None = None

    def __getattr__(self, name: str):  # sub, finditer, match: those of the compiled pattern
        if self._compiled is None:
            self._compiled = regex.compile(*self._args)
        return getattr(self._compiled, name)


_lazy = _LazyRegex


# -- judges: context rules that need more than a regex ---------------------------------------------
# Names whose value is a secret: `HF_TOKEN`, `api_key`, `db_password`, `client_secret`,
# `AWS_SECRET_ACCESS_KEY`, `KAGGLE_KEY` (upper-case `*_KEY` only: `cache_key` is not a secret).
SECRET_NAME_RE = regex.compile(
    r"(?i)(?:^|[_\-.])(?:auth[_-]?)?(?:token|secret|password|passwd|pwd|passphrase|api[_-]?key|"
    r"access[_-]?key(?:[_-]?id)?|secret[_-]?(?:access[_-]?)?key|private[_-]?key|client[_-]?secret|credentials?)$"
    r"|^[A-Z0-9_]*_KEY$"
)
# Kinds by the name a value was assigned to, first hit wins.
NAME_KINDS = (
    ("wandb", "wandb-key"), ("kaggle", "kaggle-key"), ("aws_secret", "aws-secret-key"),
    ("secret_access", "aws-secret-key"), ("aws_session", "aws-session-token"), ("hugging", "hf-token"),
    ("hf_", "hf-token"), ("openai", "openai-key"), ("anthropic", "anthropic-key"), ("github", "github-token"),
    ("gh_", "github-token"), ("pass", "password"), ("pwd", "password"),
)
PLACEHOLDER_VALUES = frozenset({"none", "null", "nil", "true", "false", "undefined", "required", "optional",
                                "redacted", "hidden", "changeme", "your_token", "your_api_key", "xxxxxxxx"})
DOTTED_NAME_RE = regex.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?")


def looks_secret(value: str) -> bool:
    """A value that reads like a credential, not a placeholder, a flag, a path or code."""
    if len(value) < MIN_SECRET_LENGTH or value[0] in "<$%{*[(/~.\\":
        return False
    if value.lower() in PLACEHOLDER_VALUES or len(set(value)) <= 2:
        return False
    if DOTTED_NAME_RE.fullmatch(value):  # os.environ.get, args.api_key
        return False
    return any(c.isdigit() for c in value) or len(value) >= LONG_SECRET_LENGTH


def kind_of_name(name: str) -> str:
    lowered = name.lower().replace("-", "_")
    for part, kind in NAME_KINDS:
        if part in lowered:
            return kind
    return "secret"


def _judge_name(match: regex.Match) -> str | None:
    name = match["name"]
    return kind_of_name(name) if SECRET_NAME_RE.search(name) else None


def _judge_netrc(match: regex.Match) -> str | None:
    return "wandb-key" if "wandb" in match["machine"].lower() else "netrc-password"


def _judge_netrc_line(match: regex.Match) -> str | None:
    value = match["secret"]
    if not looks_secret(value):
        return None
    return "wandb-key" if regex.fullmatch(r"(?:local-)?[0-9a-f]{40}", value) else "netrc-password"


def _judge_authorization(match: regex.Match) -> str | None:
    return "basic-auth" if match["scheme"].lower() == "basic" else "bearer-token"


def _judge_url_password(match: regex.Match) -> str | None:
    return None if match["secret"].startswith("<redacted") else "url-password"


RULES: tuple[Rule, ...] = (
    # Shapes: secrets wherever they appear.
    Rule("private-key", _lazy(
        r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)"), ("PRIVATE KEY",)),
    Rule("anthropic-key", _lazy(_NOT_AFTER_WORD + r"sk-ant-" + _TOKEN_CHARS + "{20,}"), ("sk-ant-",)),
    Rule("openai-key", _lazy(
        _NOT_AFTER_WORD + r"sk-(?:(?:proj|svcacct|admin|None)-" + _TOKEN_CHARS + r"{20,}|[A-Za-z0-9]{32,}"
        + _ALNUM_AFTER + ")"), ("sk-",)),
    Rule("hf-token", _lazy(_NOT_AFTER_WORD + r"hf_[A-Za-z0-9]{30,}" + _ALNUM_AFTER), ("hf_",)),
    Rule("github-token", _lazy(
        _NOT_AFTER_WORD + r"(?:gh[pousr]_[A-Za-z0-9]{30,}" + _ALNUM_AFTER + r"|github_pat_[A-Za-z0-9_]{40,})"),
        ("gh", "github_pat_")),
    Rule("aws-access-key", _lazy(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}" + _ALNUM_AFTER),
         ("AKIA", "ASIA")),
    Rule("google-api-key", _lazy(r"(?<![\w-])AIza[0-9A-Za-z_\-]{35}" + _ALNUM_AFTER), ("AIza",)),
    Rule("jwt", _lazy(
        _NOT_AFTER_WORD + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"), ("eyJ",)),
    # Context: the value is a secret because of what it was given to.
    Rule("aws-secret-key", _lazy(
        r"(?i)(?:secret_access_key|SecretAccessKey)[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"),
        ("secret",)),
    Rule("aws-session-token", _lazy(
        r"(?i)(?:aws_session_token|SessionToken)[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{16,})"),
        ("session",)),
    Rule("wandb-key", _lazy(
        r"(?i)\bwandb\s+login\s+(?:--?[\w-]+\s+)*(?P<secret>(?:local-)?[0-9a-f]{40})\b"), ("login",)),
    Rule("wandb-key", _lazy(
        r"(?i)\bwandb\.login\((?:[^)\"']|\"[^\"]*\"|'[^']*')*?key\s*=\s*[\"'](?P<secret>[^\"'\s]{8,})"),
        ("wandb.login",)),
    Rule("netrc-password", _lazy(
        r"\bmachine\s+(?P<machine>\S+)\s+(?:login\s+\S+\s+)?password\s+(?P<secret>\S+)"), ("password",),
        _judge_netrc),
    # A netrc's lines quoted one by one: "  password 0f1e...". A value that reads like a word
    # ("password authentication failed") is not one.
    Rule("netrc-password", _lazy(r"(?m)^[ \t]*password[ \t]+(?P<secret>\S+)[ \t]*$"), ("password",),
         _judge_netrc_line),
    Rule("kaggle-key", _lazy(r"\"key\"\s*:\s*\"(?P<secret>[0-9a-f]{32})\""), ("\"key\"",)),
    Rule("url-password", _lazy(
        r"://(?P<user>[^/\s:@<>\"'?#]*):(?P<secret>[^/\s@<>\"'?#]+)@"), ("://",), _judge_url_password),
    Rule("url-token", _lazy(
        r"(?i)[?&](?:token|access_token|refresh_token|id_token|auth|auth_token|api_key|apikey|key|sig|signature|"
        r"secret|client_secret|password|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
        r"x-goog-credential)=(?P<secret>[^&\s#\"'<>]+)"), ("=",)),
    Rule("bearer-token", _lazy(
        r"(?i)\bauthorization[\"']?\s*[:=]\s*[\"']?(?P<scheme>bearer|token|basic)\s+(?P<secret>[A-Za-z0-9._~+/=\-]+)"),
        ("authorization",), _judge_authorization),
    Rule("bearer-token", _lazy(r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/\-]{16,}=*)"), ("bearer",)),
    # `--hub-token VALUE`, `--password=VALUE`
    Rule("secret", _lazy(r"(?<![\w-])--(?P<name>[A-Za-z][\w-]{0,%d})(?:=|[ \t]+)" % MAX_NAME_LENGTH),
         ("--",), _judge_name, _lazy(r"[^\s\"'<>=]+=*")),
    # `HF_TOKEN=...`, `export WANDB_API_KEY=...`, `api_key: ...`, `{'password': '...'}`,
    # `os.environ["OPENAI_API_KEY"] = "..."`.
    Rule("secret", _lazy(
        r"(?<![\w-])(?P<name>[A-Za-z][\w\-.]{0,%d})[\"']?\]?[ \t]*[:=][ \t]*[\"']?" % MAX_NAME_LENGTH),
        ("=", ":"), _judge_name, _lazy(r"[^\s\"'<>,;()\[\]{}=]+=*")),
)

_HOME_END = r"[^/\\\s'\"`:;,()<>\[\]{}|*?]+"
_PATH_START = r"(?<![\w.~-])(?<![\w.~-]/)"
HOME_RULES: tuple[Rule, ...] = (
    # `C:\Users\alice`, `C:/Users/alice`, and the doubled backslashes of a Python repr.
    Rule("", _lazy(
        r"(?i)(?<![\w])[A-Z]:(?P<sep>\\\\|\\|/)Users(?P=sep)(?!(?:Public|Default|All Users)(?:[\\/]|$))"
        r"[^\\/\s'\"`:;,()<>\[\]{}|*?]+"), ("Users",)),
    Rule("", _lazy(_PATH_START + r"/home/" + _HOME_END), ("/home/",)),
    Rule("", _lazy(_PATH_START + r"/Users/(?!Shared(?:/|$))" + _HOME_END), ("/Users/",)),
    Rule("", _lazy(_PATH_START + r"/mnt/[a-z]/Users/(?!Public(?:/|$)|Default(?:/|$))" + _HOME_END),
         ("/Users/",)),
)


def redact_text(text: str) -> str:
    """Text with every secret replaced by `<redacted:KIND>` and every home directory by `~`."""
    if not text:
        return text
    lowered = text.lower()
    for rule in RULES:
        if rule.needle and not any(n.lower() in lowered for n in rule.needle):
            continue
        if rule.value is not None:
            text = _redact_assignments(text, rule)
        else:
            text = rule.pattern.sub(lambda m, rule=rule: _replace(m, rule), text)
        lowered = text.lower()
    for rule in HOME_RULES:
        if rule.needle and not any(n.lower() in lowered for n in rule.needle):
            continue
        text = rule.pattern.sub("~", text)
    return text


def _redact_assignments(text: str, rule: Rule) -> str:
    assert rule.judge is not None and rule.value is not None
    out: list[str] = []
    done = 0  # text[:done] is in `out`
    for match in rule.pattern.finditer(text):
        if match.start() < done:
            continue  # inside a value already redacted
        kind = rule.judge(match)
        if kind is None:
            continue
        value = rule.value.match(text, match.end())
        if value is None or not looks_secret(value.group()):
            continue
        out += [text[done:value.start()], f"<redacted:{kind}>"]
        done = value.end()
    return "".join(out) + text[done:] if out else text


def _replace(match: regex.Match, rule: Rule) -> str:
    kind = rule.judge(match) if rule.judge is not None else rule.kind
    if kind is None:
        return match.group(0)
    label = f"<redacted:{kind}>"
    if "secret" not in match.re.groupindex:
        return label
    start, end = match.span("secret")
    whole_start = match.start()
    text = match.group(0)
    return text[: start - whole_start] + label + text[end - whole_start:]


def redact_incident(incident: Incident) -> Incident:
    """The incident with every text in it redacted, whatever fields it has grown."""
    return _redact_value(incident)


def redact_report(report: Report) -> Report:
    """The report with its incidents and the names of its sources redacted."""
    return dataclasses.replace(
        report,
        sources=tuple(redact_text(s) for s in report.sources),
        incidents=tuple(redact_incident(i) for i in report.incidents),
    )


def _redact_value(value):
    if isinstance(value, str):
        return redact_text(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _redact_value(getattr(value, f.name))
                   for f in dataclasses.fields(value) if f.init and f.name not in KEEP_FIELDS}
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        if value and all(isinstance(v, str) for v in value):
            # Lines of one text (an unknown error's context): a key block spans several.
            return tuple(redact_text("\n".join(value)).split("\n"))
        return tuple(_redact_value(v) for v in value)
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value

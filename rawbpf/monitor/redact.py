"""Secret redaction for recorded command lines; pure, no syscalls.

Claude's children carry credentials on their command lines often enough (``curl -H 'Authorization: …'``,
``--api-key``, ``ANTHROPIC_API_KEY=…`` in ``sh -c`` strings) that an audit log must not keep them. Redaction
replaces the secret itself with ``[REDACTED]`` and keeps the rest, so the log still says what ran.
"""

from __future__ import annotations

import re
from typing import List, Sequence, Tuple

__tier__ = "pure"

MARK = "[REDACTED]"

#: options whose *value* is a secret: ``--api-key X`` and ``--api-key=X``
SECRET_OPTIONS = frozenset(
    {"--api-key", "--apikey", "--token", "--auth-token", "--access-token", "--password", "--secret",
     "--client-secret"}
)

_PATTERNS: Tuple[Tuple[re.Pattern[str], str], ...] = (
    # Anthropic keys anywhere (sk-ant-api03-…, sk-ant-admin01-…, sk-ant-oat01-…)
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}"), MARK),
    # other well-known token formats Claude's children handle: GitHub, GitLab, Slack, AWS access key ids
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{20,}"
                r"|xox[abpors]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16})\b"), MARK),
    # the password of a URL's user info: https://user:secret@host/
    (re.compile(r"\b([a-z][a-z0-9+.\-]*://[^/:@\s'\"]+):[^@/\s'\"]+@", re.I), r"\1:" + MARK + "@"),
    # HTTP credentials headers, up to a quote or the end of the line
    (re.compile(r"(?i)\b(authorization|proxy-authorization)(\s*:\s*)[^'\"\r\n]+"), r"\1\2" + MARK),
    (re.compile(r"(?i)\b(x-api-key)(\s*:\s*)[^'\"\s]+"), r"\1\2" + MARK),
    # NAME=value where NAME says it is a secret: token=, api_key=, ANTHROPIC_API_KEY=, password=, …
    (
        re.compile(r"(?i)\b([A-Za-z0-9_.\-]*(?:api[_\-]?key|token|secret|passw(?:or)?d))=([^\s&'\";]+)"),
        r"\1=" + MARK,
    ),
)


#: something every pattern above needs to match; text without it is returned untouched after one scan
TRIGGER = re.compile(r"(?i)sk-ant-|gh[pousr]_|github_pat_|glpat-|xox[abpors]-|akia|://|authorization|x-api-key|=")
#: TRIGGER for lower-cased ASCII text: the same matches, without IGNORECASE (which makes the scan ~8x slower)
_TRIGGER_LOWER = re.compile(
    r"sk-ant-|gh[pousr]_|github_pat_|glpat-|xox[abpors]-|akia|://|authorization|x-api-key|=")


#: fixed strings, one of which every match of _TRIGGER_LOWER contains: a substring test for each is several
#: times cheaper than the regex's scan of a typical command line, which holds none of them
_NEEDLES = ("=", "://", "sk-ant-", "gh", "glpat-", "xox", "akia", "authorization", "x-api-key")


def may_hold_secret(text: str) -> bool:
    """Whether ``text`` has something every secret pattern needs (False: :func:`redact_text` leaves it as
    is). ASCII text, the usual case, is lower-cased, tested for the fixed strings a trigger contains, and
    scanned case-sensitively only when one is there."""
    if text.isascii():
        low = text.lower()
        for needle in _NEEDLES:
            if needle in low:
                return _TRIGGER_LOWER.search(low) is not None
        return False
    return TRIGGER.search(text) is not None


def argv_may_hold_secret(text: str) -> bool:
    """Whether :func:`redact_argv` could change the arguments joined (any separator) in ``text``: a secret
    pattern's trigger or a secret option (they all start with ``--``)."""
    return "--" in text or may_hold_secret(text)


def redact_text(text: str) -> str:
    """``text`` with every secret pattern replaced."""
    if not may_hold_secret(text):
        return text
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_argv(argv: Sequence[str]) -> Tuple[List[str], bool]:
    """Redacted copy of ``argv`` and whether anything was redacted."""
    out: List[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MARK)
            hide_next = False
            continue
        opt, eq, _ = arg.partition("=")
        if opt.lower() in SECRET_OPTIONS:
            if eq:
                out.append(f"{opt}={MARK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg))
    return out, out != list(argv)

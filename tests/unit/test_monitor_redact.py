"""Secret redaction in recorded argv."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawbpf.monitor import redact
from rawbpf.monitor.redact import MARK, TRIGGER, may_hold_secret, redact_argv, redact_text


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["claude", "--api-key", "abc"], ["claude", "--api-key", MARK]),
        (["claude", "--api-key=abc"], ["claude", f"--api-key={MARK}"]),
        (["x", "--TOKEN", "t"], ["x", "--TOKEN", MARK]),
        (["curl", "https://h/?token=s3cr3t&page=2"], ["curl", f"https://h/?token={MARK}&page=2"]),
        (["env", "ANTHROPIC_API_KEY=sk-ant-api03-abcdefgh", "claude"],
         ["env", f"ANTHROPIC_API_KEY={MARK}", "claude"]),
        (["sh", "-c", "curl -H 'Authorization: Bearer abc.def' https://x"],
         ["sh", "-c", f"curl -H 'Authorization: {MARK}' https://x"]),
        (["curl", "-H", "x-api-key: sk-ant-api03-Zzzzzzzz"], ["curl", "-H", f"x-api-key: {MARK}"]),
        (["echo", "key is sk-ant-admin01-Q_w-e end"], ["echo", f"key is {MARK} end"]),
        (["git", "push", "https://x-access-token:ghs_abc123@github.com/o/r.git"],
         ["git", "push", f"https://x-access-token:{MARK}@github.com/o/r.git"]),
        (["gh", "auth", "login", "--with-token", "ghp_" + "a1B2" * 9],
         ["gh", "auth", "login", "--with-token", MARK]),
        (["aws", "configure", "set", "aws_access_key_id", "AKIAABCDEFGHIJKLMNOP"],
         ["aws", "configure", "set", "aws_access_key_id", MARK]),
        (["git", "clone", "git@github.com:o/r.git"], ["git", "clone", "git@github.com:o/r.git"]),
        (["curl", "https://example.com/a:b@c"], ["curl", "https://example.com/a:b@c"]),
        (["git", "commit", "-m", "fix tokenizer"], ["git", "commit", "-m", "fix tokenizer"]),
        (["ls", "-la"], ["ls", "-la"]),
    ],
)
def test_redact_argv(argv: list, want: list) -> None:
    out, changed = redact_argv(argv)
    assert out == want
    assert changed == (want != argv)


def test_trailing_secret_option_without_value_is_kept() -> None:
    assert redact_argv(["claude", "--api-key"]) == (["claude", "--api-key"], False)


@given(st.lists(st.text(max_size=40), max_size=8))
def test_redaction_never_leaks_an_anthropic_key(words: list) -> None:
    key = "sk-ant-api03-" + "AbC123_-" * 4
    argv = [*words, f"prefix{key}suffix", "--api-key", key]
    out, changed = redact_argv(argv)
    assert changed and len(out) == len(argv)
    assert all(key not in a for a in out)
    assert redact_text(redact_text(" ".join(out))) == redact_text(" ".join(out))


_PIECES = ["sk-ant-api03-AbCdEf123", "ghp_" + "a1" * 12, "glpat-" + "x" * 20, "xoxb-1234567890ab",
           "AKIA" + "A" * 16,
           "https://bob:hunter2@example.com/", "Authorization: Bearer t0k3n", "X-Api-Key: k3y", "token=abc",
           "API_KEY=zzz", "password=pw", "=", "://", "plain", " ", "'", '"', "&", ";", "\n"]


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=8), max_size=8).map("".join))
def test_prefilter_never_changes_the_result(text: str) -> None:
    slow = text
    for pattern, repl in redact._PATTERNS:
        slow = pattern.sub(repl, slow)
    assert redact.redact_text(text) == slow


@given(st.text(alphabet=st.sampled_from(list("skantghpousr_ithubplxoAKIaz:/=-ÅXY")), max_size=30) | st.text())
def test_may_hold_secret_says_what_the_trigger_pattern_says(text: str) -> None:
    assert may_hold_secret(text) == (TRIGGER.search(text) is not None)

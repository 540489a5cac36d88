"""No credential survives into anything stored."""

import pytest

from llm_ledger.events import REDACTED, Scrubber, scrub


@pytest.mark.parametrize(
    ("text", "secret_fragment"),
    [
        ("Incorrect API key provided: sk-proj-AbCdEf1234567890XYZ.", "AbCdEf1234567890XYZ"),
        ("invalid x-api-key sk-ant-api03-abcdefghijklmnop", "abcdefghijklmnop"),
        ("header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("groq says gsk_0123456789abcdefABCDEF is revoked", "0123456789abcdef"),
        ('{"api_key": "hunter2hunter2"}', "hunter2hunter2"),
        ("connect to postgresql://ledger:s3cretpass@db:5432/x", "s3cretpass"),
        ("google AIzaSyA1234567890abcdefgh", "AIzaSyA1234567890abcdefgh"),
    ],
)
def test_credential_shapes_are_removed(text: str, secret_fragment: str) -> None:
    cleaned = scrub(text)
    assert secret_fragment not in cleaned
    assert REDACTED in cleaned


def test_known_secrets_are_removed_whatever_their_shape() -> None:
    key = "plain-looking-key-without-prefix-42"
    cleaned = Scrubber([key]).scrub(f"the key {key} is not valid; echo: {key[::-1]} {key}")
    assert key not in cleaned
    assert cleaned.count(REDACTED) == 2


def test_ordinary_text_is_left_alone() -> None:
    text = "The model's maximum context length is 8192 tokens; your messages used 9000 tokens."
    assert scrub(text) == text


# --- shapes from detect-secrets, and the ones it lacks (issue 11) -------------------------------------

_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
_PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"


@pytest.mark.parametrize(
    ("text", "secret_fragment"),
    [
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ('{"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}', "bPxRfiCYEXAMPLEKEY"),
        ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        (f"the session token is {_JWT}, keep it", "dozjgNryP4J3jVmNHl0w5N"),
        ("github_pat_11ABCDEFG0123456789abc_defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "11ABCDEFG"),
        ("GET https://maps.googleapis.com/maps/api/geocode/json?address=x&key=AIzb_notgooglebutsecret", "notgoogle"),
        ("https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&sig=R2Fy%2Bbm9uX3NpZw%3D&se=2026", "R2Fy%2Bbm9"),
        ("https://s3.amazonaws.com/b/k?X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0&X-Amz-Date=1", "0f1e2d3c4b"),
        (f"-----BEGIN RSA PRIVATE KEY-----\n{_PEM_BODY}\n{_PEM_BODY}\n-----END RSA PRIVATE KEY-----", _PEM_BODY[:20]),
        (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{_PEM_BODY}\n(cut here)", _PEM_BODY[:20]),
        ("post to https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/abcdefghijklmnopqrstuvwx now", "abcdefghijkl"),
        ("xoxe-1-abcdefghijklmnop and xoxa-2-0123456789", "abcdefghijklmnop"),
        ("stripe sk_live_0123456789abcdefghijklmn", "0123456789abcdef"),
    ],
)
def test_shapes_from_detect_secrets_and_beyond_are_removed(text: str, secret_fragment: str) -> None:
    cleaned = scrub(text)
    assert secret_fragment not in cleaned, cleaned
    assert REDACTED in cleaned


def test_a_pem_block_is_removed_whole_and_the_text_after_it_kept() -> None:
    text = f"before\n-----BEGIN PRIVATE KEY-----\n{_PEM_BODY}\n-----END PRIVATE KEY-----\nafter"
    assert scrub(text) == f"before\n{REDACTED}\nafter"


@pytest.mark.parametrize(
    "text",
    [
        "See https://example.com/search?q=python&page=2#results for more.",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed the retry loop",
        "finish reason: end_turn; id chatcmpl-0123456789abcdef; model gpt-4.1-mini-2025-04-14",
        "The keyboard shortcut is Ctrl+K; the signal handler was reset.",
    ],
)
def test_ordinary_text_with_look_alikes_is_left_alone(text: str) -> None:
    assert scrub(text) == text


# --- linear in the text, whatever the text (issue 9) --------------------------------------------------

# Texts that make a backtracking pattern retry from every position: runs of one token's characters that
# never complete it. The URL-credential pattern took 11 s on 100,000 letters (quadratic: 4 MB, hours).
_ADVERSARIAL = {
    "letters": "'a' * n + '://'",
    "jwt prefixes": "'eyJ' * (n // 3)",
    "url without host": "'a://' + 'b:' * (n // 2)",
    "label without value": "'token' + ' ' * n",
    "query labels": "'&key=' * (n // 5)",
    "aws label": "'aws key ' * (n // 8)",
    "key id look-alike": "'AKIA' + 'A' * n + 'a'",
    "pem headers": "'-----BEGIN PRIVATE KEY-----' * (n // 27)",
}
_MEASURE = """
import json, sys, time
from llm_ledger.events import scrub
result = {}
for name, build in json.loads(sys.argv[1]).items():
    times = []
    for n in (400_000, 4_000_000):
        text = eval(build)
        best = None
        for _ in range(2 if n < 1_000_000 else 1):
            started = time.process_time()
            scrub(text)
            spent = time.process_time() - started
            best = spent if best is None else min(best, spent)
        times.append(best)
    result[name] = times
print(json.dumps(result))
"""


def test_scrubbing_is_linear_on_multi_megabyte_adversarial_texts() -> None:
    """4 MB costs about 10x what 0.4 MB does (a quadratic pattern: 100x); CPU time of a child process, so
    that other processes' load does not count. The child is killed after 10 minutes: before the fix, the
    first text alone would have taken about 3 minutes at 0.4 MB and hours at 4 MB."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(_ADVERSARIAL)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    for name, (small, large) in json.loads(done.stdout).items():
        assert large < 60, f"{name}: 4 MB took {large:.1f} s of CPU"
        assert large < 40 * max(small, 0.001), f"{name}: 0.4 MB {small:.3f} s, 4 MB {large:.3f} s: not linear"

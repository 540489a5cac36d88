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

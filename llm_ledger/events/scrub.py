"""Removal of credentials from text before it is stored or exported (error messages, captured content,
provider-supplied ids and names).

Each shape is a regular expression scanned once over the text, linear in the text's length whatever the
text: every quantifier that could run over a long stretch is possessive (``++``, ``*+``,
``{n,}+``: it never gives back what it took, so a failed match costs one scan, not one per split), and
every pattern that such a quantifier opens may only start where its token starts (a lookbehind refuses a
start inside a run of the token's characters), so two attempts never scan the same run. The one lazy
scan (a private key's body, up to its END line) always succeeds, to the END line or to the end of the
text, so it is never repeated. tests/events/test_scrub.py scrubs multi-megabyte adversarial texts.

Shapes taken from Yelp's ``detect-secrets`` 1.5.0 (Apache License 2.0) plugins, rewritten in that linear
form: ``aws`` (access key ids; secret access keys next to an ``aws ... key`` label), ``jwt``,
``github_token``, ``private_key``, ``slack``, ``stripe`` (under the ``sk_``/``rk_`` prefixes) and
``basic_auth`` (credentials in URLs). We vendor them rather than depend on the package: its API scans
files and lines, pulls ``requests`` and ``pyyaml`` in, and several of its expressions backtrack
(``eyJ[...]+\\.`` is quadratic on a long run without a dot). Ours add what it lacks: fine-grained GitHub
tokens (``github_pat_``), signatures and keys in URL queries (``?key=``, ``&sig=``, ``X-Amz-Signature``),
whole PEM blocks (not only their first line), Slack webhook URLs under ``/workflows`` and ``/triggers``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

# Each pattern is a credential, or a label (named ``label``, kept) followed by the credential.
_PATTERNS: tuple[str, ...] = (
    # PEM private keys, the whole block (detect-secrets: private_key); unterminated: to the end of the text.
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]*?-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|[\s\S]*+)",
    r"PuTTY-User-Key-File-[0-9]:(?:[\s\S]*?Private-MAC: [0-9a-fA-F]++|[\s\S]*+)",
    # Authorization header values: "Bearer <token>", "Basic <b64>".
    r"(?P<label>\b(?i:Bearer|Basic)\s++)[A-Za-z0-9\-._~+/]++=*+",
    # Provider key shapes: OpenAI/Anthropic/OpenRouter "sk-...", Stripe "sk_live_"/"rk_live_", Groq "gsk_...",
    # xAI "xai-...", GitHub "ghp_" (detect-secrets: github_token) and "github_pat_", Slack "xox?-"
    # (detect-secrets: slack), GitLab "glpat-".
    r"(?<![A-Za-z0-9_\-])(?i:sk|pk|rk|gsk|xai|ghp|gho|ghu|ghs|ghr|xox[abposre]|xapp|glpat)[-_]"
    r"[A-Za-z0-9\-_*•.]{6,}+",
    r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{20,}+",
    r"(?<![A-Za-z0-9_\-])AIza[A-Za-z0-9\-_]{10,}+",
    r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{8,}+",
    # AWS access key ids, and secret access keys after an "aws ... key" label (detect-secrets: aws).
    r"(?<![A-Za-z0-9])(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[A-Z0-9]{12,}+(?![A-Za-z0-9])",
    r"(?P<label>(?i:aws).{0,20}?(?i:secret|key|pwd|pw|password|pass|token).{0,20}?)"
    r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
    # JSON Web Tokens, with or without "Bearer" (detect-secrets: jwt).
    r"(?<![A-Za-z0-9_=\-])eyJ[A-Za-z0-9_=\-]++\.[A-Za-z0-9_=\-]++(?:\.[A-Za-z0-9_=+/\-]++)?+",
    # Slack webhook URLs (detect-secrets: slack).
    r"(?P<label>(?i:https://hooks\.slack\.com/(?:services|workflows|triggers)/))[A-Za-z0-9_/]++",
    # Secrets in URL queries: ?key=..., &sig=..., X-Amz-Signature=..., ...
    r"(?P<label>[?&;](?i:key|sig|signature|token|secret|password|passwd|auth|apikey|api[-_]key|access[-_]token"
    r"|client[-_]secret|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature"
    r"|x-goog-credential)=)[^&#\s\"'<>]++",
    # Labelled secrets: api_key=..., "x-api-key": "...", access_token: ..., password=...
    r"""(?P<label>["']?(?i:(?:x-)?(?:api[-_ ]?key|access[-_]?token|auth[-_]?token|client[-_]?secret|secret"""
    r"""|password|passwd|token))["']?\s*+[=:]\s*+["']?+)[^\s"',;&}]{4,}+""",
    # Credentials in URLs: scheme://user:secret@host (detect-secrets: basic_auth).
    r"(?P<label>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*+://[^\s:/@]++:)[^\s@/]++(?=@)",
)


_SHAPES: tuple[re.Pattern[str], ...] = tuple(re.compile(pattern) for pattern in _PATTERNS)

# Every match of a shape contains one of these literals (as written, or in lower case for the shapes
# that ignore case): a text without any (most provider ids, many error messages) skips the shapes. Plain
# substring searches: 1-2 us on a short id, where a regular expression of them measured 10 us and the
# shapes themselves 5.5 us.
_TRIGGERS: tuple[str, ...] = ("-----BEGIN", "PuTTY-", "github_pat_", "AIza", "hf_", "A3T", "ABIA", "ACCA",
                              "AKIA", "ASIA", "eyJ")  # fmt: skip
_LOWER_TRIGGERS: tuple[str, ...] = (
    "bearer", "basic", "xox", "xapp", "glpat", "aws", "hooks.slack", "key", "sig", "token", "secret", "passw",
    "auth", "://", "x-amz", "x-goog",
    *(f"{prefix}{sep}" for prefix in ("sk", "pk", "rk", "xai", "gho", "ghp", "ghu", "ghs", "ghr") for sep in "-_"),
)  # fmt: skip


def _may_hold_a_shape(text: str) -> bool:
    if any(trigger in text for trigger in _TRIGGERS):
        return True
    lower = text.lower()
    return any(trigger in lower for trigger in _LOWER_TRIGGERS)


_MIN_SECRET_LENGTH = 6


class Scrubber:
    """Replaces credentials in text with ``[REDACTED]``.

    Known secret values (the API keys the executor was configured with) are removed verbatim, which
    catches a key echoed back in any shape; the patterns catch credentials we were never told about.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        known = {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        # Longest first, so that a key which contains another key is removed whole.
        self._secrets: tuple[str, ...] = tuple(sorted(known, key=len, reverse=True))

    def with_secrets(self, secrets: Iterable[str | None]) -> Scrubber:
        """A scrubber that also removes ``secrets``."""
        return Scrubber((*self._secrets, *secrets))

    def scrub(self, text: str) -> str:
        """``text`` with every known secret and credential-shaped fragment replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if not _may_hold_a_shape(text):
            return text
        for shape in _SHAPES:
            text = shape.sub(_replacement, text)
        return text


def _replacement(match: re.Match[str]) -> str:
    label = match.groupdict().get("label")
    return REDACTED if label is None else label + REDACTED


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without credentials; ``secrets`` are values to remove verbatim in addition to the patterns."""
    return Scrubber(secrets).scrub(text)

"""The dashboard's OpenID Connect login: what it is configured with (``LLM_LEDGER_OIDC_*``) and the
``[auth]`` section of the ``secrets.toml`` that Streamlit's ``st.login`` reads it from.

Streamlit takes its login configuration from secrets files only, so ``llm-ledger dashboard`` writes one
into a directory of its own (mode 0700, the file 0600), points Streamlit at it (``--secrets.files``) and
removes it when Streamlit exits. Plain Python: importing this module does not import Streamlit.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llm_ledger.environment import (
    LLM_LEDGER_OIDC_CLIENT_ID,
    LLM_LEDGER_OIDC_CLIENT_SECRET,
    LLM_LEDGER_OIDC_COOKIE_SECRET,
    LLM_LEDGER_OIDC_ISSUER,
    LLM_LEDGER_OIDC_OPERATORS_CLAIM,
    LLM_LEDGER_OIDC_OPERATORS_GROUP,
    LLM_LEDGER_OIDC_REDIRECT_URI,
    LLM_LEDGER_OIDC_TENANT_CLAIM,
)
from llm_ledger.errors import LedgerError

CALLBACK_PATH = "/oauth2callback"
"""Where Streamlit receives the provider's answer: the redirect URI's path."""
MIN_COOKIE_SECRET_CHARACTERS = 32
SECRETS_FILE_NAME = "secrets.toml"
_REQUIRED = (
    LLM_LEDGER_OIDC_CLIENT_ID,
    LLM_LEDGER_OIDC_CLIENT_SECRET,
    LLM_LEDGER_OIDC_REDIRECT_URI,
    LLM_LEDGER_OIDC_COOKIE_SECRET,
)


class LoginConfigurationError(LedgerError):
    """Raised when ``LLM_LEDGER_OIDC_*`` cannot be used; ``str()`` names the variable and what is wrong."""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """The identity provider, the dashboard's client at it, and the claims that decide who sees what."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    cookie_secret: str
    tenant_claim: str = "tenant"
    operators_claim: str = "groups"
    operators_group: str = "llm-ledger-operators"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OidcSettings | None:
        """``None`` when ``LLM_LEDGER_OIDC_ISSUER`` is unset (no login); a ``LoginConfigurationError`` when
        it is set but another required variable is missing or unusable."""
        issuer = LLM_LEDGER_OIDC_ISSUER.get(environ)
        if issuer is None:
            return None
        missing = [variable.name for variable in _REQUIRED if variable.get(environ) is None]
        if missing:
            raise LoginConfigurationError(
                f"{LLM_LEDGER_OIDC_ISSUER.name} is set, so the dashboard logs people in, but "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"
            )
        settings = cls(
            issuer=issuer.rstrip("/"),
            client_id=LLM_LEDGER_OIDC_CLIENT_ID.value(environ),
            client_secret=LLM_LEDGER_OIDC_CLIENT_SECRET.value(environ),
            redirect_uri=LLM_LEDGER_OIDC_REDIRECT_URI.value(environ),
            cookie_secret=LLM_LEDGER_OIDC_COOKIE_SECRET.value(environ),
            tenant_claim=LLM_LEDGER_OIDC_TENANT_CLAIM.value(environ),
            operators_claim=LLM_LEDGER_OIDC_OPERATORS_CLAIM.value(environ),
            operators_group=LLM_LEDGER_OIDC_OPERATORS_GROUP.value(environ),
        )
        settings._check()
        return settings

    def _check(self) -> None:
        if not _is_web_address(self.issuer):
            raise LoginConfigurationError(
                f"{LLM_LEDGER_OIDC_ISSUER.name} must be the provider's http(s) address, got {self.issuer!r}"
            )
        problem = _redirect_problem(self.redirect_uri)
        if problem is not None:
            raise LoginConfigurationError(
                f"{LLM_LEDGER_OIDC_REDIRECT_URI.name} must be the dashboard's http(s) address as browsers reach it,"
                f" with the path {CALLBACK_PATH} (e.g. https://ledger.example{CALLBACK_PATH}): {problem},"
                f" got {self.redirect_uri!r}"
            )
        if len(self.cookie_secret) < MIN_COOKIE_SECRET_CHARACTERS:
            # Whoever can forge the cookie is whoever they claim to be: a short secret is guessed offline.
            raise LoginConfigurationError(
                f"{LLM_LEDGER_OIDC_COOKIE_SECRET.name} must be at least {MIN_COOKIE_SECRET_CHARACTERS} characters"
                f" (openssl rand -base64 32 makes one), got {len(self.cookie_secret)}"
            )
        self.secrets_toml()  # a value Streamlit could not read stops the command here, not in Streamlit

    @property
    def redirect_host(self) -> str:
        """The host browsers reach the dashboard by: the redirect URI's, without port."""
        return urlsplit(self.redirect_uri).hostname or ""

    @property
    def metadata_url(self) -> str:
        """The provider's discovery document (OpenID Connect Discovery 1.0)."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def secrets_toml(self) -> str:
        """The ``[auth]`` section of Streamlit's ``secrets.toml``: one provider, Streamlit's ``default``."""
        values = {
            "redirect_uri": self.redirect_uri,
            "cookie_secret": self.cookie_secret,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "server_metadata_url": self.metadata_url,
        }
        # A JSON string is a TOML basic string (the same escapes), so no value can break out of its line;
        # unescaped, as ensure_ascii would write a character beyond U+FFFF as a surrogate pair TOML refuses.
        lines = [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in values.items()]
        written = "[auth]\n" + "\n".join(lines) + "\n"
        try:  # what JSON leaves as it is and TOML does not take (U+007F, a lone surrogate) stops here
            tomllib.loads(written)
            written.encode("utf-8")
        except (tomllib.TOMLDecodeError, UnicodeEncodeError) as exc:
            raise LoginConfigurationError(
                f"the login's settings cannot be written for Streamlit: a value holds a character TOML refuses ({exc})"
            ) from None
        return written

    def write_secrets(self, directory: Path) -> Path:
        """Write ``secrets_toml`` to ``directory/secrets.toml``, readable by this user alone."""
        path = directory / SECRETS_FILE_NAME
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(self.secrets_toml())
        return path


def _redirect_problem(uri: str) -> str | None:
    """Why the provider may not send browsers back to ``uri``, or None. Plain http only to this machine
    (the code and the login cookie would otherwise cross the network in clear)."""
    parts = urlsplit(uri)
    if not _is_web_address(uri):
        return "not an http(s) address"
    if parts.username is not None or parts.password is not None:
        return "it names a user"
    if parts.query or parts.fragment or uri.endswith(("?", "#")):
        return "it has a query or a fragment"
    if parts.path != CALLBACK_PATH:
        return f"its path is {parts.path or '/'!r}"
    if parts.scheme != "https" and not _is_loopback_name(parts.hostname or ""):
        return "plain http is for this machine (localhost, 127.0.0.1, ::1) alone"
    return None


def _is_loopback_name(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_web_address(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)

"""Where the digest secret comes from (``events.digests``): ``LLM_LEDGER_DIGEST_KEY``, else a file of the
ledger's home that is made on first use, so that capture ``hash`` (the default) keeps working with nothing
configured and keyed digests are never replaced by plain ones.

- ``LLM_LEDGER_DIGEST_KEY``: the base64 of 32 random bytes (``llm-ledger audit digest-key --new`` makes
  one), or the path of a file holding it (a secrets manager's mount).
- Unset: ``$LLM_LEDGER_HOME/digest.key`` (``~/.llm-ledger/digest.key``), read if it exists, else made with
  a new secret, readable by its owner alone (0600), and said once in the log, with its path: an auditor
  needs it (``llm-ledger audit digest-key``) to check a prompt. Made complete or not at all (written
  aside, then linked into place), so that processes starting together all end up with the one secret.
  Every process writing one ledger must hold the same secret: set the variable in a deployment of several
  hosts or containers, whose homes are not shared.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llm_ledger.environment import LLM_LEDGER_DIGEST_KEY, LLM_LEDGER_HOME
from llm_ledger.events import DigestKeyError, DigestSecret
from llm_ledger.executor.errors import ConfigurationError

log = logging.getLogger("llm_ledger.executor")

DIGEST_KEY_VARIABLE = LLM_LEDGER_DIGEST_KEY.name
DIGEST_KEY_FILE = "digest.key"
_BASE64_OF_32 = 44


class DigestSecretError(ConfigurationError):
    """The digest secret is configured wrongly, or its file cannot be read or made."""


@dataclass(frozen=True, slots=True)
class LoadedSecret:
    """A digest secret and where it came from (the variable, or a file's path), to say so."""

    secret: DigestSecret
    source: str


def load_digest_secret(environ: Mapping[str, str] | None = None, *, create: bool = True) -> LoadedSecret:
    """The digest secret as configured in ``environ`` (the process's environment when None). ``create``:
    make the home's file when it does not exist (an auditor's command asks with ``create=False``, and is
    told where the secret would be)."""
    value = LLM_LEDGER_DIGEST_KEY.get(environ)
    if value:
        return _from_variable(value.strip())
    path = _home(environ) / DIGEST_KEY_FILE
    if path.exists() or not create:
        return LoadedSecret(_read(path, f"{path} (the digest secret made by llm-ledger)"), str(path))
    return LoadedSecret(_create(path), str(path))


def _from_variable(value: str) -> LoadedSecret:
    if len(value) != _BASE64_OF_32 or not value.endswith("="):
        path = Path(value).expanduser()
        if path.is_file():
            return LoadedSecret(_read(path, f"{DIGEST_KEY_VARIABLE}'s file {path}"), str(path))
    try:
        return LoadedSecret(DigestSecret.parse(value, DIGEST_KEY_VARIABLE), DIGEST_KEY_VARIABLE)
    except DigestKeyError as exc:
        raise DigestSecretError(f"{exc}, or the path of a file holding it") from None


def _home(environ: Mapping[str, str] | None) -> Path:
    home = LLM_LEDGER_HOME.value(environ)
    try:
        return Path(home).expanduser()
    except RuntimeError:
        raise DigestSecretError(f"{LLM_LEDGER_HOME.name}: {home!r} starts with a ~ whose home is not known") from None


def _read(path: Path, what: str) -> DigestSecret:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DigestSecretError(
            f"no digest secret: {path} does not exist and {DIGEST_KEY_VARIABLE} is not set"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestSecretError(f"cannot read {what}: {exc}") from None
    try:
        return DigestSecret.parse(text, what)
    except DigestKeyError as exc:
        raise DigestSecretError(str(exc)) from None


def _create(path: Path) -> DigestSecret:
    secret = DigestSecret.generate()
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secret.text() + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(aside, path)  # fails if another process made it first: its secret stands
        except FileExistsError:
            return _read(path, f"{path} (the digest secret made by llm-ledger)")
    except OSError as exc:
        raise DigestSecretError(
            f"cannot make the digest secret {path} ({exc.strerror or exc}): set {DIGEST_KEY_VARIABLE}, or"
            f" {LLM_LEDGER_HOME.name} to a directory this user may write"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()
    log.warning(
        "llm-ledger: made a digest secret at %s; capture 'hash' keys its digests with it. Keep it and back it"
        " up: an auditor needs it to check a prompt (llm-ledger audit digest-key). Set %s to use your own.",
        path,
        DIGEST_KEY_VARIABLE,
    )
    return secret


class DefaultDigestSecret:
    """The process's digest secret, loaded from the environment when first asked for (by the first
    execution that digests), then kept; ``reset`` forgets it (a test that changes the environment)."""

    def __init__(self) -> None:
        self._loaded: LoadedSecret | None = None
        self._lock = threading.Lock()

    def get(self) -> DigestSecret:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                loaded = self._loaded
                if loaded is None:
                    loaded = self._loaded = load_digest_secret()
        return loaded.secret

    def reset(self) -> None:
        with self._lock:
            self._loaded = None


default_digest_secret = DefaultDigestSecret()

"""Where the digest secret comes from (``events.digests``): ``LLM_LEDGER_DIGEST_KEY``, else, for the embedded
SQLite ledger alone, a file of the ledger's home made on first use, so that capture ``hash`` (the default)
keeps working with nothing configured and keyed digests are never replaced by plain ones.

- ``LLM_LEDGER_DIGEST_KEY``: the base64 of 32 random bytes (``llm-ledger audit digest-key --new`` prints
  one), or the path of a file holding it (a secrets manager's mount).
- Unset, with a PostgreSQL ledger (``LLM_LEDGER_DATABASE_URL``): refused, when the executor is built.
  Several writers share such a ledger, and a secret each made in its own home (a container's, lost when it
  is recreated) would key their digests apart: an auditor's key would then match nothing.
- Unset, with the embedded SQLite ledger: ``$LLM_LEDGER_HOME/digest.key`` (``~/.llm-ledger/digest.key``),
  beside ``ledger.db``, read if it exists, else made with a new secret, readable by its owner alone (0600),
  and said once in the log with its path. A file that is a symbolic link, not this user's, or readable or
  writable by anyone else is refused: the secret would not be the owner's alone. The file is made complete
  or not at all: written aside (``.digest.key.<pid>.<thread>.incomplete``, removed at once; one a crash
  leaves is never read and may be deleted), then hard-linked into place, so that processes starting
  together all end up with the one secret. On a filesystem without hard links it is created exclusively
  in place instead, and a process that finds it being written reads it again until it is complete.

The secret is resolved once per process, when the first executor that digests is built (or the first tool
call recorded without one), and its fingerprint (never the secret) is logged then.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llm_ledger.environment import LLM_LEDGER_DATABASE_URL, LLM_LEDGER_DIGEST_KEY, LLM_LEDGER_HOME
from llm_ledger.events import DigestKeyError, DigestSecret, key_file, read_key_file
from llm_ledger.executor.errors import ConfigurationError

log = logging.getLogger("llm_ledger.executor")

DIGEST_KEY_VARIABLE = LLM_LEDGER_DIGEST_KEY.name
DIGEST_KEY_FILE = "digest.key"
_MAX_SECRET_FILE = 4096
_INCOMPLETE_READS = 200
"""How often a process reads again a secret file another is still writing (filesystems without hard links),
``_INCOMPLETE_PAUSE`` apart, before naming the file as broken."""
_INCOMPLETE_PAUSE = 0.01
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS})


class DigestSecretError(ConfigurationError):
    """The digest secret is configured wrongly, or its file cannot be read or made."""


@dataclass(frozen=True, slots=True)
class LoadedSecret:
    """A digest secret and where it came from (the variable, or a file's path), to say so."""

    secret: DigestSecret
    source: str


def load_digest_secret(environ: Mapping[str, str] | None = None, *, create: bool = True) -> LoadedSecret:
    """The digest secret as configured in ``environ`` (the process's environment when None). ``create``: a
    writer's, which makes the home's file for the embedded ledger when it does not exist (an auditor's
    command asks with ``create=False``, and is told where the secret would be)."""
    value = LLM_LEDGER_DIGEST_KEY.get(environ)
    if value:
        return _from_variable(value.strip())
    url = LLM_LEDGER_DATABASE_URL.get(environ)
    if create and not _is_embedded(url):
        raise DigestSecretError(
            f"{DIGEST_KEY_VARIABLE} is not set, and the ledger ({_scheme(url)}://) is shared: every writer must"
            f" hold the same digest secret. Make one with `llm-ledger audit digest-key --new` and set"
            f" {DIGEST_KEY_VARIABLE} to it (or to the path of a file holding it) in every writer's environment"
        )
    path = _home(environ) / DIGEST_KEY_FILE
    if not create:
        return LoadedSecret(_read_own(path), str(path))
    if path.exists():
        return LoadedSecret(_read_complete(path), str(path))
    return LoadedSecret(_create(path), str(path))


def _scheme(url: str | None) -> str:
    return (url or "sqlite").split(":", 1)[0].split("+", 1)[0].lower()


def _is_embedded(url: str | None) -> bool:
    """Whether the ledger is the SQLite file of one host (the default one in the home, or a local URL)."""
    return _scheme(url) == "sqlite"


def _from_variable(value: str) -> LoadedSecret:
    path = key_file(value)
    if path is not None:
        try:
            text = read_key_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise DigestSecretError(f"cannot read {DIGEST_KEY_VARIABLE}'s file {path}: {exc}") from None
        return LoadedSecret(_parsed(text, f"{DIGEST_KEY_VARIABLE}'s file {path}"), str(path))
    try:
        return LoadedSecret(DigestSecret.parse(value, DIGEST_KEY_VARIABLE), DIGEST_KEY_VARIABLE)
    except DigestKeyError as exc:
        raise DigestSecretError(f"{exc}, or the path of a file holding it") from None


def _parsed(text: str, what: str) -> DigestSecret:
    try:
        return DigestSecret.parse(text, what)
    except DigestKeyError as exc:
        raise DigestSecretError(str(exc)) from None


def _home(environ: Mapping[str, str] | None) -> Path:
    home = LLM_LEDGER_HOME.value(environ)
    try:
        return Path(home).expanduser()
    except RuntimeError:
        raise DigestSecretError(f"{LLM_LEDGER_HOME.name}: {home!r} starts with a ~ whose home is not known") from None


def _read_own(path: Path) -> DigestSecret:
    """The secret of the home's file, which must be a regular file of this user's, for its owner alone."""
    text = _own_file_text(path)
    return _parsed(text, f"{path} (the digest secret made by llm-ledger)")


def _own_file_text(path: Path) -> str:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY)
    except FileNotFoundError:
        raise DigestSecretError(
            f"no digest secret: {path} does not exist and {DIGEST_KEY_VARIABLE} is not set"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DigestSecretError(f"{path} is a symbolic link: refused as the digest secret") from None
        raise DigestSecretError(f"cannot read the digest secret {path}: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise DigestSecretError(f"{path} is not a regular file: refused as the digest secret")
        if status.st_uid != os.getuid():
            raise DigestSecretError(
                f"{path} is owned by uid {status.st_uid}, not this user (uid {os.getuid()}): refused as the"
                " digest secret"
            )
        if status.st_mode & 0o077:
            raise DigestSecretError(
                f"{path} has mode {stat.S_IMODE(status.st_mode):04o}: others than its owner may read or write"
                f" it, refused as the digest secret (chmod 600 {path}, if it is still the owner's alone)"
            )
        data = file.read(_MAX_SECRET_FILE)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DigestSecretError(f"cannot read the digest secret {path}: {exc}") from None


def _create(path: Path) -> DigestSecret:
    secret = DigestSecret.generate()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = _link_into_place(path, secret)
    except OSError as exc:
        raise DigestSecretError(
            f"cannot make the digest secret {path} ({exc.strerror or exc}): set {DIGEST_KEY_VARIABLE}, or"
            f" {LLM_LEDGER_HOME.name} to a directory this user may write"
        ) from None
    if made is not secret:  # another process made it first: its secret stands
        return made
    log.warning(
        "llm-ledger: made a digest secret at %s, beside the ledger; capture 'hash' keys its digests with it."
        " Keep it and back it up, apart from the ledger's backups: an auditor needs it (llm-ledger audit"
        " digest-key) to check a prompt, and whoever holds it may confirm guesses. Set %s to use your own.",
        path,
        DIGEST_KEY_VARIABLE,
    )
    return secret


def _link_into_place(path: Path, secret: DigestSecret) -> DigestSecret:
    """``secret`` once it is ``path``'s, or the secret another process put there first."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.incomplete")
    try:
        _write_new(aside, secret)
        try:
            os.link(aside, path)
        except FileExistsError:
            return _read_own(path)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            return _create_in_place(path, secret)
        return secret
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()


def _write_new(path: Path, secret: DigestSecret) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(secret.text() + "\n")
        file.flush()
        os.fsync(file.fileno())


def _create_in_place(path: Path, secret: DigestSecret) -> DigestSecret:
    """Without hard links: made exclusively where it belongs; a process that finds it there reads it again
    until the one who made it has written it whole."""
    try:
        _write_new(path, secret)
    except FileExistsError:
        return _read_complete(path)
    return secret


def _read_complete(path: Path) -> DigestSecret:
    """The home's secret, read again while it is no secret yet: without hard links another process may be
    writing it still."""
    for _ in range(_INCOMPLETE_READS):
        with contextlib.suppress(DigestKeyError):
            return DigestSecret.parse(_own_file_text(path))
        time.sleep(_INCOMPLETE_PAUSE)
    raise DigestSecretError(
        f"{path} (the digest secret made by llm-ledger) is not the base64 of 32 bytes, and stays so (a process"
        f" making it died?): remove it if no ledger's digests were made with it, or set {DIGEST_KEY_VARIABLE}"
    )


class DefaultDigestSecret:
    """The process's digest secret, loaded from the environment when first asked for (by the first executor
    built that digests), then kept; ``reset`` forgets it (a test that changes the environment)."""

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
                    log.info(
                        "llm-ledger: digest secret from %s, fingerprint %s",
                        loaded.source,
                        loaded.secret.fingerprint(),
                    )
        return loaded.secret

    def reset(self) -> None:
        with self._lock:
            self._loaded = None


default_digest_secret = DefaultDigestSecret()

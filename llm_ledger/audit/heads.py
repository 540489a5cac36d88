"""Seal heads kept outside the database: the sealer's witness and verify's state, as append-only JSON lines.

Someone who can write the database can delete seals, or a whole tenant, and leave a shorter ledger that
is consistent in itself; only a record kept elsewhere shows what is missing. A *head log* is that record:
one JSON object per line, each the newest seal of one tenant (``sequence``, ``seal_hash``) as its writer
saw it, ``sequence`` 0 for a tenant with events but no seal yet. Lines are chained (each names the hash of
the line before it, ``prev``), so a removed or edited line breaks the chain after it, and signed with the
seal key when the writer has one, so that only its holder can write a valid line.

``audit seal --witness`` appends the head of each seal it makes (``reason`` ``sealed``; ``adopted`` for the
heads it was told to trust when its witness was started on a sealed ledger; ``recovered`` for a seal it
signed but had not recorded before it stopped). ``audit verify --state`` appends the heads it verified
(``verified``). A line is canonical JSON (``events.canonical_json``); ``entry_hash`` is the SHA-256 of the
canonical JSON of every other field but ``public_key`` and ``signature``.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.audit.keys import PublicKey, SigningKey
from llm_ledger.environment import LLM_LEDGER_SEAL_WITNESS, LLM_LEDGER_VERIFY_STATE, LLM_LEDGER_VERIFY_WITNESS
from llm_ledger.events import canonical_json, sha256_hex

SEAL_WITNESS_VARIABLE = LLM_LEDGER_SEAL_WITNESS.name
"""``audit seal --witness``'s default."""
VERIFY_WITNESS_VARIABLE = LLM_LEDGER_VERIFY_WITNESS.name
"""``audit verify --witness``'s default."""
VERIFY_STATE_VARIABLE = LLM_LEDGER_VERIFY_STATE.name
"""``audit verify --state``'s default."""
WITNESS_FILE = "witness.jsonl"
"""The witness's name inside a directory given as ``--witness``."""
STATE_FILE = "verify-state.jsonl"
"""Verify's state's name inside a directory given as ``--state``."""

_VERSION = 1
Reason = Literal["sealed", "adopted", "recovered", "verified"]
_REASONS = ("sealed", "adopted", "recovered", "verified")


@dataclass(frozen=True, slots=True)
class Head:
    """A tenant's newest seal as a writer saw it (``sequence`` 0, ``seal_hash`` None: not sealed yet)."""

    tenant_id: str
    sequence: int
    seal_hash: str | None


@dataclass(frozen=True, slots=True)
class Entry:
    """One valid line of a head log."""

    line: int
    head: Head
    reason: str
    recorded_at: str
    entry_hash: str
    public_key: str | None
    signature: str | None


@dataclass(frozen=True, slots=True)
class LogProblem:
    """Something wrong with the log itself: ``broken`` (a line edited or removed, a signature that fails, a
    head that went backwards) or ``warning`` (a line that is not a head, as a torn write leaves)."""

    line: int
    kind: str
    severity: Literal["broken", "warning"]
    detail: str
    tenant_id: str | None = None


def resolve(path: str | os.PathLike[str], file_name: str) -> Path:
    """``path``, or ``path/file_name`` when it is a directory (or ends with a slash: one to be made)."""
    resolved = Path(path).expanduser()
    is_directory = resolved.is_dir() or os.fspath(path).endswith(("/", os.sep))
    return resolved / file_name if is_directory else resolved


def _entry_hash(fields: dict[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in fields.items() if k not in _UNHASHED}))


_UNHASHED = ("entry_hash", "public_key", "signature")


@dataclass(slots=True)
class HeadLog:
    """A head log as read from ``path``: its valid entries in order and what is wrong with it.

    With ``public_key``, every entry must be signed by that key; without one, a signed entry must be signed
    by the key it names (which shows only that the line is as its signer wrote it)."""

    path: Path
    exists: bool = False
    entries: list[Entry] = field(default_factory=list)
    problems: list[LogProblem] = field(default_factory=list)
    _newest: dict[str, Entry] = field(default_factory=dict)
    """Each tenant's newest entry, kept as entries are added: a log grows by a line a seal, and looking
    through it for each line read would make reading it quadratic."""
    _tail_hash: str | None = None
    _ends_in_newline: bool = True

    @classmethod
    def read(cls, path: Path, public_key: PublicKey | None = None) -> HeadLog:
        log = cls(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return log
        except OSError as exc:
            raise AuditConfigurationError(f"cannot read the head log {path}: {exc.strerror}") from None
        log.exists = True
        log._ends_in_newline = not data or data.endswith(b"\n")
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if raw.strip():
                log._take(number, raw, public_key)
        return log

    def _take(self, number: int, raw: bytes, public_key: PublicKey | None) -> None:
        fields = _parse(raw)
        if fields is None:
            self.problems.append(
                LogProblem(number, "head_log_unreadable_line", "warning", f"{self.path} line {number} is not a head")
            )
            return
        tenant = fields["tenant_id"]

        def broken(kind: str, detail: str) -> None:
            self.problems.append(LogProblem(number, kind, "broken", f"{self.path} line {number}: {detail}", tenant))

        entry_hash = _entry_hash(fields)
        if entry_hash != fields["entry_hash"]:
            broken("head_log_edited", f"its fields give hash {entry_hash}, not {fields['entry_hash']}: edited")
        if fields["prev"] != self._tail_hash:
            broken("head_log_chain_broken", "it does not follow the line before it: a line was removed or changed")
        signature_problem = _signature_problem(fields, public_key)
        if signature_problem:
            broken("head_log_signature_invalid", signature_problem)
        head = Head(tenant, fields["sequence"], fields["seal_hash"])
        earlier = self._newest.get(tenant)
        if earlier is not None and head.sequence < earlier.head.sequence:
            broken(
                "head_log_went_backwards",
                f"tenant's head goes back from seal {earlier.head.sequence} (line {earlier.line}) to {head.sequence}",
            )
        self._add(
            Entry(
                number,
                head,
                fields["reason"],
                fields["recorded_at"],
                fields["entry_hash"],
                fields["public_key"],
                fields["signature"],
            )
        )
        self._tail_hash = fields["entry_hash"]

    def _add(self, entry: Entry) -> None:
        self.entries.append(entry)
        self._newest[entry.head.tenant_id] = entry

    def heads(self) -> Mapping[str, Entry]:
        """Each tenant's newest entry (a live, read-only view)."""
        return MappingProxyType(self._newest)

    @property
    def is_broken(self) -> bool:
        return any(problem.severity == "broken" for problem in self.problems)

    def signer(self) -> str | None:
        """The public key of the newest signed entry."""
        return next((entry.public_key for entry in reversed(self.entries) if entry.signature), None)

    def append(self, heads: Iterable[Head], reason: Reason, signing_key: SigningKey | None) -> list[Entry]:
        """Append one line per head, chained to the last, in one write that is fsync'd before it returns.

        Callers hold ``locked(path)`` from reading the log to here, so that the chain's tail is still theirs.
        """
        lines, made = [], []
        for head in heads:
            fields: dict[str, Any] = {
                "v": _VERSION,
                "tenant_id": head.tenant_id,
                "sequence": head.sequence,
                "seal_hash": head.seal_hash,
                "reason": reason,
                "recorded_at": datetime.now(UTC).isoformat(),
                "prev": self._tail_hash,
            }
            fields["entry_hash"] = _entry_hash(fields)
            fields["public_key"] = signing_key.public_key.text() if signing_key else None
            fields["signature"] = signing_key.sign_head(fields["entry_hash"]) if signing_key else None
            lines.append(canonical_json(fields) + b"\n")
            signed = (fields["public_key"], fields["signature"])
            made.append(Entry(0, head, reason, fields["recorded_at"], fields["entry_hash"], *signed))
            self._tail_hash = fields["entry_hash"]
        if not lines:
            return made
        # A torn last line (a crash mid-write) stays as it is, evidence; the new lines start after it.
        prefix = b"" if self._ends_in_newline else b"\n"
        try:
            with open(self.path, "ab") as file:
                file.write(prefix + b"".join(lines))
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise AuditConfigurationError(f"cannot append to the head log {self.path}: {exc.strerror}") from None
        self.exists, self._ends_in_newline = True, True
        for entry in made:
            self._add(entry)
        return made


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s lock file for as long as it is held: two sealers (or verifiers)
    sharing a log take turns from reading its tail to appending after it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115  (held across the yield)
    except OSError as exc:
        raise AuditConfigurationError(f"cannot use the head log {path}: {exc.strerror}") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A line's fields, or None unless it is a head of this version with every field of its type."""
    try:
        fields = json.loads(raw)
    except ValueError:
        return None
    expected: dict[str, tuple[type, ...]] = {
        "v": (int,),
        "tenant_id": (str,),
        "sequence": (int,),
        "seal_hash": (str, type(None)),
        "reason": (str,),
        "recorded_at": (str,),
        "prev": (str, type(None)),
        "entry_hash": (str,),
        "public_key": (str, type(None)),
        "signature": (str, type(None)),
    }
    if not isinstance(fields, dict) or set(fields) != set(expected):
        return None
    if any(not isinstance(fields[name], types) or isinstance(fields[name], bool) for name, types in expected.items()):
        return None
    if fields["v"] != _VERSION or fields["reason"] not in _REASONS or fields["sequence"] < 0:
        return None
    return fields


def _signature_problem(fields: dict[str, Any], public_key: PublicKey | None) -> str | None:
    signature, entry_hash = fields["signature"], fields["entry_hash"]
    if public_key is not None:
        if signature is None:
            return "not signed, but a public key is pinned"
        if not public_key.is_head_signature_of(signature, entry_hash):
            return "its signature is not the pinned key's"
        return None
    if signature is None:
        return None
    try:
        named = PublicKey.parse(fields["public_key"] or "", "the head's public_key")
    except AuditConfigurationError:
        return "signed, but its public_key is not an Ed25519 key"
    if not named.is_head_signature_of(signature, entry_hash):
        return "its signature does not match its hash and public key"
    return None

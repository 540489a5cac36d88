"""Checking content an auditor holds against the ledger's keyed digests (``llm-ledger audit digest`` and
``audit digest-key``; docs/AUDIT.md "Is this the prompt that was sent?").

A tenant's digest key is derived from the operator's secret (``events.digests``; where the secret is,
``executor.digest_secret``, which the CLI reads): whoever holds the secret prints a tenant's key and hands
it to the auditor, who computes the digest of the messages or the text they hold under it
(``messages_digest``, ``text_digest``) exactly as the executor did (the same builders of
``events.values``), and matches it in the audit views.
"""

from __future__ import annotations

import json
from typing import Any

from llm_ledger.audit.errors import AuditConfigurationError
from llm_ledger.events import CanonicalizationError, DigestKey, DigestKeyError, Scrubber, key_file, read_key_file
from llm_ledger.events import values as builders
from llm_ledger.events.values import JsonDict

_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name"})
_CALL_KEYS = frozenset({"id", "name", "arguments"})
_nothing_scrubbed = Scrubber([])


def parse_key(value: str) -> DigestKey:
    """A tenant's key as ``audit digest-key`` prints it: the path of a file holding it (which keeps it out of
    the process list), or its base64."""
    text = value.strip()
    path = key_file(text)
    if path is not None:
        try:
            text = read_key_file(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditConfigurationError(f"--key: cannot read {path}: {exc}") from None
    try:
        return DigestKey.parse(text, "--key")
    except DigestKeyError as exc:
        raise AuditConfigurationError(
            f"{exc} (as `llm-ledger audit digest-key` prints it), or the path of a file holding it"
        ) from None


def messages_digest(key: DigestKey, document: bytes) -> str:
    """The digest ``audit_executions.input_digest`` holds for the messages of ``document``: a JSON array of
    ``{"role", "content"}`` objects in the order sent, with ``tool_calls`` (``{"id", "name", "arguments"}``,
    the arguments' JSON text), ``tool_call_id`` and ``name`` where a message had them."""
    try:
        messages = json.loads(document)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuditConfigurationError(f"the messages are not JSON: {exc}") from None
    if not isinstance(messages, list) or not messages:
        raise AuditConfigurationError("the messages must be a JSON array of at least one message object")
    entries = [_entry(index, message) for index, message in enumerate(messages)]
    try:
        digest: str = builders.input_values(entries, "hash", _nothing_scrubbed, key)["digest"]
    except CanonicalizationError as exc:  # a lone surrogate, which no message sent can hold
        raise AuditConfigurationError(f"the messages have no canonical form: {exc}") from None
    return digest


def text_digest(key: DigestKey, data: bytes) -> str:
    """The digest ``output_digest`` (or a tool's ``arguments_digest``, ``result_digest``) holds for a text
    whose UTF-8 bytes are exactly ``data``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuditConfigurationError(f"the text is not UTF-8: {exc}") from None
    digest: str = builders.output_values(text, "hash", _nothing_scrubbed, key)["digest"]
    return digest


def _entry(index: int, message: Any) -> tuple[str, str] | tuple[str, str, JsonDict]:
    where = f"message {index}"
    if not isinstance(message, dict):
        raise AuditConfigurationError(f"{where} is not an object")
    unknown = sorted(set(message) - _MESSAGE_KEYS)
    if unknown:
        raise AuditConfigurationError(f"{where} has keys a message does not: {', '.join(unknown)}")
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str) or not isinstance(content, str):
        raise AuditConfigurationError(f"{where} needs a text 'role' and a text 'content'")
    fields: JsonDict = {}
    calls = message.get("tool_calls")
    if calls:
        if not isinstance(calls, list) or not all(_is_call(call) for call in calls):
            raise AuditConfigurationError(
                f"{where}: 'tool_calls' must be a list of {{'id', 'name', 'arguments'}} objects of text"
            )
        fields["tool_calls"] = calls
    for name in ("tool_call_id", "name"):
        value = message.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise AuditConfigurationError(f"{where}: '{name}' must be text")
            fields[name] = value
    return (role, content, fields) if fields else (role, content)


def _is_call(call: Any) -> bool:
    return isinstance(call, dict) and set(call) == _CALL_KEYS and all(isinstance(v, str) for v in call.values())

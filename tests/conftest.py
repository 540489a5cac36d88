"""Fixtures shared by the whole suite: fake provider servers and executors wired to them."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator

import pytest

os.environ["AGNO_TELEMETRY"] = "false"
# The digest secret of every executor the tests build, and of their subprocesses: without it, the first
# execution would make one in the home of whoever runs the tests (executor.digest_secret). The tests of
# that default set their own home and reset the process's secret.
os.environ["LLM_LEDGER_DIGEST_KEY"] = base64.b64encode(
    hashlib.sha256(b"llm-ledger test digest secret").digest()
).decode()

from hypothesis import HealthCheck, settings

from llm_ledger.executor import InMemorySink, ProviderSettings, RetryPolicy
from tests.fakes import FakeProviderServer
from tests.store import databases

# Hypothesis times each example (200 ms by default) and fails a slow one: on a machine whose two cores
# other suites keep busy that is a timed assertion, failing for the load, not the code. Its examples and
# their shrinking are unchanged.
settings.register_profile("loaded-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded-machine")

# The keys the fake providers receive. They look like real ones so that the scrubber's patterns and
# its verbatim removal are both exercised when a provider echoes them back.
API_KEYS = {
    "openai": "sk-proj-TESTKEY0openai0000000001",
    "openrouter": "sk-or-v1-TESTKEY0openrouter00000002",
    "groq": "gsk_TESTKEY0groq000000000000003",
    "anthropic": "sk-ant-api03-TESTKEY0anthropic0000004",
}


@pytest.hookimpl(trylast=True)  # after pytest's own, which tears the fixtures still up down (on Ctrl-C)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the session's PostgreSQL databases, together: once every fixture that used them is torn down."""
    databases.drop_all()


@pytest.fixture(scope="session")
def _server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def server(_server: FakeProviderServer) -> Iterator[FakeProviderServer]:
    """The fake OpenAI/OpenRouter/Groq/Anthropic server on 127.0.0.1, with no script and no record."""
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def providers(server: FakeProviderServer) -> dict[str, ProviderSettings]:
    """Provider settings pointing every real provider at the fake server."""
    return {
        "openai": ProviderSettings(api_key=API_KEYS["openai"], base_url=server.openai_base_url),
        "openrouter": ProviderSettings(api_key=API_KEYS["openrouter"], base_url=server.openrouter_base_url),
        "groq": ProviderSettings(api_key=API_KEYS["groq"], base_url=server.groq_base_url),
        "anthropic": ProviderSettings(api_key=API_KEYS["anthropic"], base_url=server.anthropic_base_url),
    }


@pytest.fixture
def sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def fast_retries() -> RetryPolicy:
    """Backoff short enough for tests; Retry-After is still honoured as a floor."""
    return RetryPolicy(base_delay=0.001, max_delay=0.01)

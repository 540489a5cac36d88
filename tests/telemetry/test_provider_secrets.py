"""No configured API key survives through what a provider echoes: not in the database, not in the spool,
not in the exported spans (issue 11, finding 10).

The fake server answers with the key it was sent as its request id, response id, model name and finish
reason; the execution is recorded into a real SQLite ledger, into the spool of a writer whose database
is down, and exported to a real OTLP receiver, and each is searched for the key's bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from llm_ledger import LLMExecutor, LLMMessage, execution_context
from llm_ledger.events import REDACTED
from llm_ledger.executor import ProviderSettings
from llm_ledger.store import EventStore, migrate
from llm_ledger.store.writer import BufferedWriter
from tests.conftest import API_KEYS
from tests.fakes import FakeProviderServer, Reply, Unauthorized
from tests.telemetry.traced import Traced

ECHOING = Reply(
    text="ok",
    request_id="req-{api_key}",
    response_id="{api_key}",
    response_model="model-{api_key}",
    finish_reason="stop {api_key}",
)
MESSAGES = [LLMMessage(role="user", content="hello")]
DOWN = "postgresql://postgres@127.0.0.1:9/nowhere"  # port 9 (discard) is closed: refused at once


async def _run(executor: LLMExecutor, tenant: str) -> None:
    with execution_context(tenant_id=tenant, session_id="s-1"):
        response = await executor.generate(MESSAGES)
    assert response.request_id == f"req-{REDACTED}"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq", "openrouter"])
async def test_an_echoed_key_is_in_no_stored_or_exported_string(
    traced: Traced,
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    tmp_path: Path,
    provider: str,
) -> None:
    key = API_KEYS[provider]
    server.script("m-1", Unauthorized(echo_key=True), ECHOING, Unauthorized(echo_key=True), ECHOING)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate.upgrade(url)
    stored = BufferedWriter(EventStore(url), tmp_path / "stored-spool", flush_interval=0.05)
    spooled = BufferedWriter(EventStore(DOWN), tmp_path / "spool", flush_interval=0.05, retry_interval=60)
    for writer in (stored, spooled):
        executor = LLMExecutor(
            f"{provider}/m-1",
            fallback_models=[f"{provider}/m-1"],
            max_retries=0,
            sink=writer,
            providers=providers,
            tracer=traced.tracer,
        )
        await _run(executor, "acme")
        assert writer.flush(timeout=60)
    # flush means journaled; the stored writer's events must also reach its database before it is read.
    assert stored.wait_stored(timeout=60)
    assert stored.stats.written == 7
    stored.close(timeout=30)
    # The writer whose database is down keeps them in its journal on disk, which is what is read below.
    assert spooled.close(timeout=30).journaled == 7

    with EventStore(url).engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM llm_ledger_events")).fetchall()
    database = str([tuple(row) for row in rows])  # not repr(rows): SQLAlchemy cuts long values there
    assert len(rows) == 7
    assert key not in database
    assert f"model-{REDACTED}" in database, "the echoed fields are kept, scrubbed"
    spool = b"".join(path.read_bytes() for path in (tmp_path / "spool").rglob("*") if path.is_file())
    assert spool and key.encode() not in spool

    traced.flush()
    spans = traced.receiver.wait_for_spans(6)
    exported = repr([(s.name, s.attributes, s.status_message, s.events) for s in spans])
    assert key not in exported
    assert f"model-{REDACTED}" in exported and "gen_ai.response.id" in exported

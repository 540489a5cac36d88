"""Agno logs every provider error of its model calls on its own stdout handler, an echoed API key
included. The executor records those failures as events and raises them, so Agno's copies of the errors
of the executor's own calls are dropped, on whichever of Agno's loggers is current: a Workflow or a Team
switches Agno's module-level logger to its own for the rest of the process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from agno.utils import log as agno_log

from llm_ledger import AllModelsFailedError, InMemorySink, LLMExecutor, LLMMessage
from llm_ledger.executor import ProviderSettings
from tests.conftest import API_KEYS
from tests.fakes import FakeProviderServer, Unauthorized


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


SWITCHES: dict[str, Callable[[], None]] = {
    "agent": agno_log.use_agent_logger,
    "team": agno_log.use_team_logger,
    "workflow": agno_log.use_workflow_logger,
}


@pytest.fixture
def agno_records() -> Iterator[_Capture]:
    """Every record Agno's three loggers would print."""
    capture = _Capture()
    loggers = [agno_log.agent_logger, agno_log.team_logger, agno_log.workflow_logger]
    for logger in loggers:
        logger.addHandler(capture)
    yield capture
    for logger in loggers:
        logger.removeHandler(capture)
    agno_log.use_agent_logger()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("current", sorted(SWITCHES))
async def test_agno_prints_nothing_of_the_executors_own_calls_whichever_logger_is_current(
    server: FakeProviderServer,
    providers: dict[str, ProviderSettings],
    agno_records: _Capture,
    current: str,
) -> None:
    SWITCHES[current]()
    server.default(None, Unauthorized(echo_key=True))
    executor = LLMExecutor("openai/a", fallback_models=["anthropic/b"], sink=InMemorySink(), providers=providers)
    with pytest.raises(AllModelsFailedError):
        await executor.generate([LLMMessage(role="user", content="hi")])
    assert len(server.requests) == 2
    printed = [record.getMessage() for record in agno_records.records]
    assert not [line for line in printed if API_KEYS["openai"] in line or API_KEYS["anthropic"] in line], printed


def test_agno_still_logs_what_is_not_the_executors(agno_records: _Capture) -> None:
    """Only records logged during the executor's own calls are dropped."""
    agno_log.use_workflow_logger()  # type: ignore[no-untyped-call]
    agno_log.log_error("an error of the application's own Agno use")  # type: ignore[no-untyped-call]
    assert [record.getMessage() for record in agno_records.records] == ["an error of the application's own Agno use"]

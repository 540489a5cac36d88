"""Option values a command cannot use are refused before it starts, naming the option and the value."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from llm_ledger.cli import _listening_problem
from llm_ledger.exit_codes import ExitCode
from llm_ledger.projections import Projector
from llm_ledger.store import migrate
from tests.cli.conftest import Outcome


def assert_refused(outcome: Outcome, option: str, value: str) -> None:
    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE
    assert f"argument {option}:" in outcome.err
    assert value in outcome.err


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_dashboard_refuses_a_port_that_is_not_one(port: str, llm_ledger: Callable[..., Outcome]) -> None:
    assert_refused(llm_ledger("dashboard", "--port", port), "--port", port)


def test_dashboard_on_an_address_it_cannot_listen_on_says_so(
    sqlite_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    migrate.upgrade(sqlite_url)

    outcome = llm_ledger("dashboard", "--address", "999.1.1.1", "--database-url", sqlite_url)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE
    assert "the dashboard cannot listen on --address 999.1.1.1 --port 8501" in outcome.err


def test_dashboard_on_a_port_in_use_says_so(sqlite_url: str, llm_ledger: Callable[..., Outcome]) -> None:
    migrate.upgrade(sqlite_url)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])

        outcome = llm_ledger("dashboard", "--port", port, "--database-url", sqlite_url)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE
    assert f"cannot listen on --address 127.0.0.1 --port {port}: Address already in use" in outcome.err


@pytest.mark.parametrize("interval", ["-1", "nan", "0", "inf", "soon"])
def test_audit_seal_refuses_an_interval_that_is_not_a_wait(interval: str, llm_ledger: Callable[..., Outcome]) -> None:
    assert_refused(llm_ledger("audit", "seal", "--follow", "--interval", interval), "--interval", interval)


@pytest.mark.parametrize("seconds", ["-1", "nan", "0", "1e300"])
def test_project_refuses_poll_seconds_that_would_busy_loop_or_never_wake(
    seconds: str, llm_ledger: Callable[..., Outcome]
) -> None:
    assert_refused(llm_ledger("project", "--follow", "--poll-seconds", seconds), "--poll-seconds", seconds)


@pytest.mark.parametrize("seconds", [-1.0, 0.0, float("nan")])
def test_the_projector_refuses_to_follow_without_waiting(seconds: float, sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    projector = Projector(sqlite_url)
    stop = threading.Event()
    stop.set()  # a projector that accepted the value would return at once instead of raising
    try:
        with pytest.raises(ValueError, match="poll_seconds must be a positive number of seconds"):
            projector.follow(poll_seconds=seconds, stop=stop)
    finally:
        projector.close()


@pytest.mark.parametrize("address", ["::1", "::"])
def test_dashboard_checks_an_ipv6_address_as_ipv6(
    address: str, sqlite_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    migrate.upgrade(sqlite_url)
    with socket.create_server((address, 0), family=socket.AF_INET6) as taken:
        port = taken.getsockname()[1]

        outcome = llm_ledger("dashboard", "--address", address, "--port", str(port), "--database-url", sqlite_url)

    # Refused for the port it holds, not for the address's family: a free port on it is one Streamlit can take.
    assert outcome.status == ExitCode.USAGE
    assert f"cannot listen on --address {address} --port {port}: Address already in use" in outcome.err
    assert _listening_problem(address, port) is None


@pytest.mark.parametrize(
    ("since", "problem"),
    [
        ("99999999999d", "reaches back before the year 1"),
        ("99999999d", "reaches back before the year 1"),
        ("999999999999999999999w", "reaches back before the year 1"),
        ("0001-01-01T00:00:00+01:00", "in UTC it falls outside the years 1 to 9999"),
        ("9999-12-31T23:59:59-14:00", "in UTC it falls outside the years 1 to 9999"),
    ],
)
def test_verify_since_outside_the_calendar_is_a_usage_error(
    since: str, problem: str, sqlite_url: str, llm_ledger: Callable[..., Outcome]
) -> None:
    migrate.upgrade(sqlite_url)

    outcome = llm_ledger("audit", "verify", "--since", since, "--database-url", sqlite_url)

    assert "Traceback" not in outcome.err
    assert outcome.status == ExitCode.USAGE
    assert f"--since {since!r}: {problem}" in outcome.err

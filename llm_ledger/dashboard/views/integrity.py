"""What the Sessions and Execution pages say above their tool calls: which tool executions are not as
recorded, and which have no outcome yet (each is a stream of its own, checked as an execution's is)."""

from __future__ import annotations

import streamlit as st

from llm_ledger.dashboard.shaping import Row
from llm_ledger.dashboard.source import VERIFY_COMMAND


def tool_integrity(rows: list[Row], whose: str) -> None:
    """The banners for the tool executions among ``rows`` (a row without a check is a call not run);
    ``whose`` names what they are of (``of this session``)."""
    checked = [row for row in rows if "integrity" in row]
    broken = sum(row["integrity"] == "broken" for row in checked)
    incomplete = sum(row["integrity"] == "incomplete" for row in checked)
    if broken:
        st.error(
            f"{broken} of {len(checked)} tool executions {whose} are not as they were recorded (their hash chain "
            "or a seal says so): what they show below cannot be trusted. They are marked **broken** in the table; "
            f"`{VERIFY_COMMAND}` names every event."
        )
    if incomplete:
        st.warning(
            f"{incomplete} of {len(checked)} tool executions have no outcome recorded (no terminal event): their "
            "process died while the tool ran, or it is still running. They are marked **incomplete**."
        )

"""The ```sql blocks of docs/AUDIT.md, and ``psql`` to run them the way an auditor does."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

AUDIT_MD = Path(__file__).resolve().parents[2] / "docs" / "AUDIT.md"

_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$")
# psql variables (``:'name'``, ``:"name"``, ``:name``); string literals and ``::`` casts are matched so
# that they are skipped whole.
_TOKENS = re.compile(r""":'(\w+)'|:"(\w+)"|'(?:[^']|'')*'|::|:(\w+)""")


@dataclass(frozen=True, slots=True)
class SqlBlock:
    heading: str
    ordinal: int
    sql: str

    @property
    def key(self) -> str:
        """The block's name in the tests: the heading it sits under and its number there (from 1)."""
        return f"{self.heading} [{self.ordinal}]"

    def variables(self) -> set[str]:
        """The psql variables the block interpolates."""
        return {name for match in _TOKENS.finditer(self.sql) for name in match.groups() if name}


def sql_blocks(markdown: str) -> list[SqlBlock]:
    blocks: list[SqlBlock] = []
    heading = ""
    lines = iter(markdown.splitlines())
    for line in lines:
        if line.startswith("```"):
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            if line.strip() == "```sql":
                ordinal = sum(block.heading == heading for block in blocks) + 1
                blocks.append(SqlBlock(heading, ordinal, "\n".join(body)))
        elif match := _HEADING.match(line):
            heading = match.group(1)
    return blocks


class PsqlError(AssertionError):
    """psql ended with an error."""


def psql_url(url: str, user: str | None = None) -> str:
    """A SQLAlchemy URL as psql takes it (no driver), optionally for another login."""
    parsed = make_url(url).set(drivername="postgresql")
    if user is not None:
        parsed = parsed.set(username=user, password=None)
    return parsed.render_as_string(hide_password=False)


def _psql(url: str, script: str, variables: Mapping[str, str], stop_on_error: bool) -> subprocess.CompletedProcess[str]:
    # A session of its own, without a controlling terminal: what psql would ask at the terminal (the
    # password of \password) it reads from the script instead.
    executable = shutil.which("psql")
    if executable is None:
        raise PsqlError(
            "psql is not installed: the audit queries are tested as an auditor runs them "
            "(apt-get install postgresql-client)"
        )
    arguments = [executable, "-X", "-q", "--csv", "-v", f"ON_ERROR_STOP={int(stop_on_error)}", "-d", url]
    for name, value in variables.items():
        arguments += ["-v", f"{name}={value}"]
    return subprocess.run(
        arguments, input=script, capture_output=True, text=True, timeout=120, check=False, start_new_session=True
    )


def run_psql_on_after_errors(url: str, script: str, variables: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` the way a person at psql's prompt does: an error is printed and the next statement
    runs anyway (psql's default, ``ON_ERROR_STOP`` off)."""
    return _psql(url, script, variables, stop_on_error=False)


def run_psql(url: str, script: str, variables: Mapping[str, str]) -> list[dict[str, str]]:
    """Run ``script`` with psql (no psqlrc, stop at the first error) and return the rows of its one
    result, as text; ``[]`` when it returns none."""
    done = _psql(url, script, variables, stop_on_error=True)
    if done.returncode != 0:
        raise PsqlError(f"psql failed ({done.returncode}): {done.stderr.strip()}\n--- script ---\n{script}")
    records = list(csv.reader(io.StringIO(done.stdout)))
    if not records:
        return []
    header, *rows = records
    return [dict(zip(header, row, strict=True)) for row in rows]

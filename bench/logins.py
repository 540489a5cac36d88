"""The short-lived logins the benches run the project's processes under, as the README prescribes for
each (granted the project's roles only, never the superuser the bench sets the database up with)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


@contextlib.contextmanager
def temporary_login(url: str, kind: str, roles: Sequence[str]) -> Iterator[str]:
    """A login granted ``roles`` only, as a URL of ``url``'s database; dropped on exit, its sessions ended
    first (roles are the cluster's: a random name keeps concurrent runs apart)."""
    name = f"llm_ledger_bench_{kind}_{secrets.token_hex(4)}"
    login = sql.Identifier(name)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(login))
        admin.execute(sql.SQL("GRANT {} TO {}").format(sql.SQL(", ").join(map(sql.Identifier, roles)), login))
    try:
        yield make_url(url).set(username=name, password=None).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity WHERE usename = %s", (name,))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(login))

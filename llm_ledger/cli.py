"""The ``llm-ledger`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from llm_ledger import __version__


def _demo(args: argparse.Namespace) -> int:
    from llm_ledger.demo import run_quick_demo

    return asyncio.run(run_quick_demo(seed=args.seed))


def _database_url(args: argparse.Namespace) -> str:
    from llm_ledger.store import StoreSettings

    return str(args.database_url or StoreSettings.from_env().database_url)


def _shown(url: str) -> str:
    from llm_ledger.store import normalize_url

    return normalize_url(url).render_as_string(hide_password=True)


def _db_upgrade(args: argparse.Namespace) -> int:
    from llm_ledger.store import migrate

    url = _database_url(args)
    migrate.upgrade(url, args.revision)
    print(f"{_shown(url)}: at revision {migrate.current(url)} (head {migrate.head()})")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from llm_ledger.store import migrate

    url = _database_url(args)
    try:
        migrate.downgrade(url, args.revision)
    except migrate.DowngradeRefusedError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(f"{_shown(url)}: at revision {migrate.current(url) or 'base (empty)'}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from llm_ledger.store import migrate

    url = _database_url(args)
    revision = migrate.current(url)
    head = migrate.head()
    state = "up to date" if revision == head else f"behind head {head}: run llm-ledger db upgrade"
    print(f"{_shown(url)}: {revision or 'not migrated'} ({state})")
    return 0 if revision == head else 1


def _project(args: argparse.Namespace) -> int:
    from llm_ledger.progress import ProgressBar
    from llm_ledger.projections import PriceTableError, Projector
    from llm_ledger.store import StoreUnavailableError, migrate

    url = _database_url(args)
    if migrate.current(url) != migrate.head():
        print(f"llm-ledger: {_shown(url)} is not at the newest schema: run llm-ledger db upgrade", file=sys.stderr)
        return 2
    try:
        projector = Projector(url, batch_size=args.batch_size)
    except PriceTableError as exc:
        print(f"llm-ledger: {exc}", file=sys.stderr)
        return 2
    try:
        if args.rebuild:
            status = projector.status()
            bar = ProgressBar(status.pending + status.events_applied, "events")
            result = projector.rebuild(progress=bar.advance)
            bar.finish()
            print(f"rebuilt the read models from {result.events:,} events")
        if args.follow:
            print(f"following {_shown(url)} (Ctrl-C to stop)", file=sys.stderr)
            projector.follow(poll_seconds=args.poll_seconds)
        elif not args.rebuild:
            bar = ProgressBar(projector.status().pending, "events")
            result = projector.catch_up(progress=bar.advance)
            bar.finish()
            total = projector.status().events_applied
            print(f"applied {result.events:,} events; the read models now hold {total:,}")
    except StoreUnavailableError as exc:
        print(f"llm-ledger: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        projector.close()
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from llm_ledger.dashboard.server import run_dashboard

    return run_dashboard(database_url=args.database_url, port=args.port, address=args.address)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-ledger", description="Audited LLM execution for Focal.")
    parser.add_argument("--version", action="version", version=f"llm-ledger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run one audited execution on mock models and print its response and events"
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the mock models' randomness")
    demo.set_defaults(handler=_demo)

    db = commands.add_parser("db", help="create and migrate the event store (PostgreSQL or SQLite)")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    url_help = "database URL (default: LLM_LEDGER_DATABASE_URL, else SQLite at ~/.llm-ledger/ledger.db)"
    upgrade = db_commands.add_parser("upgrade", help="bring the database to the newest schema")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.add_argument("--database-url", help=url_help)
    upgrade.set_defaults(handler=_db_upgrade)
    downgrade = db_commands.add_parser(
        "downgrade", help="go back to an older schema (refused when it would drop recorded events)"
    )
    downgrade.add_argument("revision", help="target revision, or 'base' for an empty database")
    downgrade.add_argument("--database-url", help=url_help)
    downgrade.set_defaults(handler=_db_downgrade)
    current = db_commands.add_parser("current", help="show the database's schema revision")
    current.add_argument("--database-url", help=url_help)
    current.set_defaults(handler=_db_current)

    project = commands.add_parser(
        "project", help="bring the read models (the dashboard's figures) up to date with the events"
    )
    project.add_argument("--follow", action="store_true", help="keep applying new events until interrupted")
    project.add_argument(
        "--rebuild", action="store_true", help="empty the read models and replay every event (then --follow, if given)"
    )
    project.add_argument("--batch-size", type=int, default=5_000, help="events per transaction (default 5000)")
    project.add_argument("--poll-seconds", type=float, default=1.0, help="with --follow: how often to look")
    project.add_argument("--database-url", help=url_help)
    project.set_defaults(handler=_project)

    dashboard = commands.add_parser("dashboard", help="open the Streamlit dashboard of the ledger")
    dashboard.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    dashboard.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dashboard.add_argument("--database-url", help=url_help)
    dashboard.set_defaults(handler=_dashboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("AGNO_TELEMETRY", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from llm_ledger.store import StoreConfigurationError

    try:
        result: int = handler(args)
    except StoreConfigurationError as exc:
        print(f"llm-ledger: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())

"""The ``llm-ledger`` command."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from llm_ledger._metadata import __version__
from llm_ledger.environment import (
    AGNO_TELEMETRY,
    LLM_LEDGER_SEAL_WITNESS,
    LLM_LEDGER_VERIFY_STATE,
    LLM_LEDGER_VERIFY_WITNESS,
)
from llm_ledger.exit_codes import ExitCode, exit_code_table

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from llm_ledger.audit import PublicKey, Seal
    from llm_ledger.audit.erasure import PlainTexts
    from llm_ledger.audit.retention_policy import RetentionPolicy


def _demo(args: argparse.Namespace) -> int:
    from llm_ledger.demo.command import DemoOptions, run_demo

    options = DemoOptions(
        sessions=args.sessions,
        seed=args.seed,
        database_url=args.database_url,
        latency_scale=args.latency_scale,
        history=args.history,
        anchor=args.anchor,
    )
    status = run_demo(options)
    if status == 0 and args.dashboard:
        from llm_ledger.dashboard.server import run_dashboard

        return run_dashboard(database_url=args.database_url, port=8501, address="127.0.0.1")
    return status


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _months_ahead(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of months") from None
    if not 0 <= value <= 36:
        raise argparse.ArgumentTypeError(f"must be 0 to 36 months, got {value}")
    return value


def _seconds(text: str) -> float:
    """A wait: a positive, finite number of seconds (0 or less would busy-loop, NaN never ends a wait)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1 to 65535, got {value}")
    return value


def _history(text: str) -> timedelta:
    from llm_ledger.demo.timeline import parse_history

    try:
        return parse_history(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _anchor(text: str) -> datetime:
    from llm_ledger.demo.timeline import parse_anchor

    try:
        return parse_anchor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _database_url(args: argparse.Namespace) -> str:
    from llm_ledger.store import StoreSettings

    return str(args.database_url or StoreSettings.from_env().database_url)


def _shown(url: str) -> str:
    from llm_ledger.store import shown_url  # here, not at the top: `llm-ledger --help` loads no store

    return shown_url(url)


def _db_upgrade(args: argparse.Namespace) -> int:
    from llm_ledger.store import migrate

    url = _database_url(args)
    migrate.upgrade(url, args.revision)
    print(f"{_shown(url)}: at revision {migrate.current(url)} (head {migrate.head()})")
    return ExitCode.OK


def _db_downgrade(args: argparse.Namespace) -> int:
    from llm_ledger.store import migrate

    url = _database_url(args)
    migrate.downgrade(url, args.revision)
    print(f"{_shown(url)}: at revision {migrate.current(url) or 'base (empty)'}")
    return ExitCode.OK


def _db_current(args: argparse.Namespace) -> int:
    from llm_ledger.store import migrate

    url = _database_url(args)
    migrate.require_ledger(url)
    revision = migrate.current(url)
    head = migrate.head()
    state = "up to date" if revision == head else f"behind head {head}: run llm-ledger db upgrade"
    print(f"{_shown(url)}: {revision} ({state})")
    return ExitCode.OK if revision == head else ExitCode.FAILED


def _create_partitions(connection: Connection, months_ahead: int) -> list[str]:
    """``partitions.ensure_partitions``, its two expected refusals said in one line instead of a traceback."""
    from sqlalchemy.exc import DBAPIError

    from llm_ledger.cli_errors import UsageError
    from llm_ledger.errors import LedgerError
    from llm_ledger.store import partitions
    from llm_ledger.store.scoping import INGEST_ROLE, WRITER_ROLE

    try:
        return partitions.ensure_partitions(connection, months_ahead)
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == "42501":  # insufficient_privilege: EXECUTE on the function
            raise UsageError(
                f"this login may not create partitions: run --create-ahead as the database's owner or a login"
                f" granted {WRITER_ROLE} (or {INGEST_ROLE}); listing them needs no grant"
            ) from None
        if sqlstate == "55P03":  # lock_not_available: the function's lock_timeout
            raise LedgerError(
                "partitions not created: a lock on the events table (or its default partition) was not granted"
                " in time, held by a long transaction or a dump; nothing was changed, try again"
            ) from None
        raise


def _db_partitions(args: argparse.Namespace) -> int:
    from llm_ledger.store import create_store_engine, partitions

    url = _database_url(args)
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            if not partitions.is_partitioned(connection):
                kind = (
                    "SQLite keeps" if connection.dialect.name == "sqlite" else "this ledger (before revision 0008) has"
                )
                print(f"{_shown(url)}: {kind} one events table, llm_ledger_events: no partitions")
                return ExitCode.OK
            if args.create_ahead is not None:
                created = _create_partitions(connection, args.create_ahead)
                print(f"created {', '.join(created)}" if created else "no partition missing")
        with engine.begin() as connection:
            listed = partitions.list_partitions(connection)
            default_rows = partitions.count_default_rows(connection)
    finally:
        engine.dispose()
    print(f"{'partition':<28} {'from (stream id)':<38} {'to':<38} {'rows (est.)':>12} {'size':>10}")
    for partition in listed:
        rows = "-" if partition.rows is None else f"{partition.rows:,}"
        low, high = (partition.low, partition.high) if not partition.is_default else ("DEFAULT", "")
        print(f"{partition.name:<28} {low:<38} {high:<38} {rows:>12} {partition.bytes / 2**20:>8.1f} MB")
    if default_rows is None:
        print("the default partition: this login may not count its rows (the owner may); estimate above")
    elif default_rows:
        print(
            f"WARNING: the default partition holds {default_rows:,} events: streams of a month that had no"
            " partition (or ids that are not UUIDv7). They are stored and read like any other, but that month"
            " cannot get its partition while they are there",
            file=sys.stderr,
        )
    else:
        print("the default partition is empty")
    return ExitCode.OK


_OLDER_PROJECTOR = (
    "llm-ledger: read models were built by an older projector (mock/<provider>-... models counted under"
    " provider mock): run llm-ledger project --rebuild"
)


def _project(args: argparse.Namespace) -> int:
    from llm_ledger.cli_errors import UsageError
    from llm_ledger.progress import ProgressBar
    from llm_ledger.projections import Projector
    from llm_ledger.store import migrate

    url = _database_url(args)
    if migrate.current(url) != migrate.head():
        raise UsageError(f"{_shown(url)} is not at the newest schema: run llm-ledger db upgrade")
    projector = Projector(url, batch_size=args.batch_size)
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
            if projector.is_built_by_an_older_projector():
                print(_OLDER_PROJECTOR, file=sys.stderr)
    finally:
        projector.close()
    return ExitCode.OK


def _dashboard(args: argparse.Namespace) -> int:
    from llm_ledger.cli_errors import UsageError
    from llm_ledger.dashboard.server import run_dashboard

    problem = _listening_problem(args.address, args.port)
    if problem is not None:
        raise UsageError(f"the dashboard cannot listen on --address {args.address} --port {args.port}: {problem}")
    return run_dashboard(
        database_url=args.database_url, port=args.port, address=args.address, insecure_no_login=args.insecure_no_login
    )


def _listening_problem(address: str, port: int) -> str | None:
    """Why a server could not listen on ``address:port``, or None. Asked here, where it can be said in one
    line: once this process is Streamlit's (``exec``), a bad address or a busy port is its traceback."""
    import socket

    try:
        # The family the address resolves to: an IPv6 address (::1, ::) is not AF_INET's, create_server's default.
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        socket.create_server((address, port), family=family).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _pinned_key(args: argparse.Namespace) -> PublicKey | None:
    """``--public-key``, else ``LLM_LEDGER_SEAL_PUBLIC_KEY``: the key every seal must be signed by."""
    from llm_ledger.audit import PublicKey

    return PublicKey.parse(args.public_key, "--public-key") if args.public_key else PublicKey.from_env()


def _pinned_witness(args: argparse.Namespace) -> str | None:
    """``--witness``, else ``LLM_LEDGER_VERIFY_WITNESS``: the sealer's witness the seals are held against."""
    witness: str | None = args.witness or LLM_LEDGER_VERIFY_WITNESS.get()
    return witness


def _audit_verify(args: argparse.Namespace) -> int:
    import json

    from llm_ledger.audit import parse_since, verify_ledger

    since = parse_since(args.since) if args.since else None
    report = verify_ledger(
        _database_url(args),
        tenant_id=args.tenant,
        since=since,
        public_key=_pinned_key(args),
        record=not args.no_record,
        witness=_pinned_witness(args),
        state=args.state or LLM_LEDGER_VERIFY_STATE.get(),
        jobs=args.jobs,
        archive=args.archive,
    )
    print(json.dumps(report.to_json(), indent=2, default=str) if args.json else report.to_text())
    return ExitCode.OK if report.ok else ExitCode.FAILED


def _retention_policy(args: argparse.Namespace) -> RetentionPolicy:
    from llm_ledger.audit.retention_policy import RetentionPolicy

    return RetentionPolicy.parse(args.older_than, args.tenant_policy or ())


def _retention_plan(args: argparse.Namespace) -> int:
    from llm_ledger.audit.report import printable
    from llm_ledger.audit.retention import plan_retention

    plan = plan_retention(
        _database_url(args), _retention_policy(args), public_key=_pinned_key(args), witness=_pinned_witness(args)
    )
    for month in plan.months:
        print(printable(month.describe()))
    if not plan.months:
        print("no monthly partition holds events")
    return ExitCode.OK


def _retention_apply(args: argparse.Namespace) -> int:
    from llm_ledger.audit.report import printable
    from llm_ledger.audit.retention import apply_retention

    plan, outcomes = apply_retention(
        _database_url(args),
        _retention_policy(args),
        args.archive,
        public_key=_pinned_key(args),
        witness=_pinned_witness(args),
    )
    for month in plan.months:
        if not month.is_due:
            print(printable(month.describe()))
    if plan.verify_seconds is not None:
        print(f"verify run {plan.verify_run_id}: {plan.verify_seconds:.1f} s")
    for outcome in outcomes:
        print(printable(outcome.describe()), file=sys.stdout if outcome.archived else sys.stderr)
    if not outcomes:
        print("nothing is due: no month is older than every policy that applies to it")
    return ExitCode.OK if all(outcome.archived for outcome in outcomes) else ExitCode.FAILED


def _print_seals(seals: Sequence[Seal]) -> None:
    from llm_ledger.audit.report import printable

    for seal in seals:
        signed = "signed" if seal.signature else "unsigned"
        print(
            f"{printable(seal.tenant_id)}: seal {seal.sequence} over {seal.event_count:,} events in"
            f" {seal.stream_count:,} streams, root {seal.merkle_root}, {signed}; seal hash {seal.seal_hash}",
            flush=True,
        )


def _audit_seal(args: argparse.Namespace) -> int:
    import time

    from llm_ledger.audit import SEAL_WITNESS_VARIABLE, SealRefusedError, SigningKey, seal_ledger
    from llm_ledger.audit.heads import WITNESS_FILE, HeadLog, resolve
    from llm_ledger.audit.report import printable
    from llm_ledger.cli_errors import UsageError, exit_code, report
    from llm_ledger.store import StoreUnavailableError, create_store_engine

    witness = args.witness or LLM_LEDGER_SEAL_WITNESS.get()
    if args.adopt and witness is None:
        raise UsageError(f"--adopt starts a witness: give --witness or {SEAL_WITNESS_VARIABLE}")
    # One engine (and its pool) for every round of --follow, not a new one each time.
    engine = create_store_engine(_database_url(args))
    try:
        signing_key = SigningKey.from_env()
        adopt = args.adopt
        while True:
            status = ExitCode.OK
            try:
                seals = seal_ledger(
                    engine, signing_key=signing_key, tenant_id=args.tenant, witness=witness, adopt=adopt
                )
                adopt = False  # once: the next rounds find the heads it recorded
            except StoreUnavailableError as exc:
                outage = report(exc)
                if not args.follow:
                    return outage
                seals = []  # the next round seals what this one could not
                # --adopt stands until a round has started the witness (this one may have, before the outage).
                adopt = adopt and witness is not None and not HeadLog.read(resolve(witness, WITNESS_FILE)).entries
            except SealRefusedError as exc:
                # The ledger is not what the witness recorded: evidence to keep, not something to seal over.
                for refusal in exc.refusals:
                    print(f"llm-ledger: refused: {printable(refusal)}", file=sys.stderr, flush=True)
                seals, status, adopt = exc.made, exit_code(SealRefusedError), False
            if not seals and not args.follow and status == ExitCode.OK:
                print("nothing to seal: every event that can be sealed is")
            _print_seals(seals)
            if not args.follow:
                return status
            time.sleep(args.interval)
    finally:
        engine.dispose()


def _audit_keygen(args: argparse.Namespace) -> int:
    from llm_ledger.audit import PUBLIC_KEY_VARIABLE, SEAL_KEY_VARIABLE, SigningKey

    key = SigningKey.generate()
    print(f"# the sealer's secret: keep it out of the database and its backups\n{SEAL_KEY_VARIABLE}={key.text()}")
    print(f"# for llm-ledger audit verify (or --public-key)\n{PUBLIC_KEY_VARIABLE}={key.public_key.text()}")
    return ExitCode.OK


def _erase(args: argparse.Namespace) -> int:
    from llm_ledger.audit.erasure import ErasurePlan, erase
    from llm_ledger.audit.report import printable
    from llm_ledger.cli_errors import UsageError
    from llm_ledger.store import EventStore

    if not args.yes and not sys.stdin.isatty():
        raise UsageError("erase destroys keys for good: pass --yes to erase without being asked")

    def confirm(plan: ErasurePlan) -> bool:
        if args.yes:
            return True
        # What will stay readable is said before the keys go, not only after.
        answer = input(
            f"destroy {len(plan.key_ids)} data key(s) of {printable(plan.target)}? The content they encrypt can"
            f" never be read again{_plain_before(plan.plain)} [y/N] "
        )
        return answer.strip().lower() in ("y", "yes")

    store = EventStore(_database_url(args))
    try:
        done = erase(store, args.tenant, session_id=args.session, subject_id=args.subject, confirm=confirm)
    finally:
        store.close()
    if done is None:
        print("nothing erased")
        return ExitCode.OK
    print(
        f"erased {printable(done.plan.target)}: destroyed {done.key_count} data key(s); the content of"
        f" {done.events_affected} event(s) can no longer be read (erasure {done.erasure_id}); the events,"
        " their chains and seals are unchanged"
    )
    if done.plain.all_clear:
        return ExitCode.OK
    # Erased, but not all of it, or not known to be: a script that checks the status must not take this for a
    # full erasure.
    for line in _plain_left(printable(done.plan.target), done.plain):
        print(f"llm-ledger: {line}", file=sys.stderr)
    return ExitCode.FAILED


def _plain_parts(plain: PlainTexts) -> str:
    parts = []
    if plain.captured:
        parts.append(f"{plain.captured} captured text(s) recorded in full before content was encrypted")
    if plain.tool_errors:
        parts.append(
            f"{plain.tool_errors} tool error message(s) recorded before exception texts were encrypted"
            " (ToolCallFailed message)"
        )
    return "; ".join(parts)


def _unreadable(plain: PlainTexts) -> str:
    return (
        f"{plain.unreadable} event(s) could not be read for plain text (a payload that is not of its event"
        " type's form: altered or damaged, see llm-ledger audit verify)"
    )


def _plain_before(plain: PlainTexts) -> str:
    """What the confirmation adds about the texts that destroying the keys leaves readable."""
    from llm_ledger.audit.report import printable

    said = ""
    if plain.total:
        said += (
            f"; but {plain.total} text(s) of it are stored in plain text ({_plain_parts(plain)}), which"
            " crypto-shredding cannot erase: they stay readable"
        )
    if plain.unreadable:
        said += f"; and {_unreadable(plain)}"
    if plain.not_counted is not None:
        said += (
            f"; but its texts stored in plain could not be counted ({printable(plain.not_counted)}):"
            " crypto-shredding cannot erase such texts (docs/AUDIT.md lists them)"
        )
    return said


def _plain_left(target: str, plain: PlainTexts) -> list[str]:
    """What an erasure could not erase, said loudly: the texts of its sessions stored in plain, the events it
    could not read for them, or that it could not count them."""
    from llm_ledger.audit.report import printable

    lines = []
    if plain.total:
        lines.append(
            f"NOT ERASED: {plain.total} text(s) of {target} are stored in plain text ({_plain_parts(plain)}):"
            " crypto-shredding cannot erase them, and they stay readable to whoever may read the events"
        )
    if plain.unreadable:
        lines.append(
            f"NOT CHECKED: {_unreadable(plain)}, in {target}: they may keep texts stored in plain that"
            " crypto-shredding cannot erase"
        )
    if plain.not_counted is not None:
        lines.append(
            f"NOT CHECKED: the texts of {target} stored in plain could not be counted after the erasure"
            f" ({printable(plain.not_counted)}): crypto-shredding cannot erase such texts (docs/AUDIT.md lists them)"
        )
    return lines


def _audit_digest_key(args: argparse.Namespace) -> int:
    from llm_ledger.events import DigestSecret
    from llm_ledger.executor.digest_secret import DIGEST_KEY_VARIABLE, load_digest_secret

    if args.new:
        # The bare secret on stdout, so that `--new > file` is the file LLM_LEDGER_DIGEST_KEY may name.
        print(DigestSecret.generate().text())
        print(
            f"llm-ledger: a new digest secret: set {DIGEST_KEY_VARIABLE} to it, or to the path of a file holding"
            " it, in every writer's environment; keep it out of the database and its backups",
            file=sys.stderr,
        )
        return ExitCode.OK
    # Never made here: a secret made by an auditor's command would confirm nothing.
    loaded = load_digest_secret(create=False)
    key = loaded.secret.tenant_key(_tenant_named(args.tenant))
    print(key.text())
    print(
        f"llm-ledger: tenant {args.tenant!r}'s digest key, key id {key.key_id} (from {loaded.source}); it confirms"
        " that tenant's digests and tells nothing of another's",
        file=sys.stderr,
    )
    return ExitCode.OK


def _audit_digest(args: argparse.Namespace) -> int:
    from llm_ledger.audit.digests import messages_digest, parse_key, text_digest
    from llm_ledger.executor.digest_secret import load_digest_secret

    if args.key is not None:
        key = parse_key(args.key)
    else:
        key = load_digest_secret(create=False).secret.tenant_key(_tenant_named(args.tenant))
    data = sys.stdin.buffer.read()
    print(text_digest(key, data) if args.text else messages_digest(key, data))
    print(f"llm-ledger: hmac-sha256 under key id {key.key_id}", file=sys.stderr)
    return ExitCode.OK


def _tenant_named(tenant: str) -> str:
    from llm_ledger.cli_errors import UsageError
    from llm_ledger.executor import InvalidInputError
    from llm_ledger.executor.admission import check_identifier

    if not tenant:
        raise UsageError("--tenant must name a tenant")
    try:
        check_identifier("--tenant", tenant)  # as the executor checks the tenant id it derives a key for
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None
    return tenant


def _add_verify_pins(command: argparse.ArgumentParser, then: str = "") -> None:
    """``--public-key`` and ``--witness``, as ``audit verify`` takes them (and ``retention``, for its verify)."""
    command.add_argument(
        "--public-key",
        help="pin the seals' Ed25519 public key (base64; default LLM_LEDGER_SEAL_PUBLIC_KEY): unsigned or"
        f" otherwise signed seals then fail{then}",
    )
    command.add_argument(
        "--witness",
        metavar="PATH",
        help="the sealer's witness (the file or directory `audit seal --witness` appends to; default"
        " LLM_LEDGER_VERIFY_WITNESS): a seal or tenant it recorded that is gone, or a seal it never recorded,"
        f" fails{then}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-ledger",
        description="Audited LLM execution for Focal.",
        epilog=exit_code_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the table's lines as they are
    )
    parser.add_argument("--version", action="version", version=f"llm-ledger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a multi-tenant Focal-like workload on mock models into the ledger, and summarize it",
    )
    demo.add_argument(
        "--sessions", type=_positive_int, default=100, help="conversations to run, of 2 to 5 turns each (default 100)"
    )
    demo.add_argument(
        "--history",
        type=_history,
        default="7d",
        help="spread the sessions over this span before the anchor, the start of the current hour (UTC): busier"
        " in working hours, with one hour in which openai's models are rate-limited; 7d (default), 36h, ...,"
        " up to 30d; 0: all now, no incident",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of the sessions' plan, times and outcomes: the same seed in the same hour gives the same"
        " workload, its sessions starting at the same seconds, on SQLite or PostgreSQL (default 7)",
    )
    demo.add_argument(
        "--database-url", help="database URL (default: LLM_LEDGER_DATABASE_URL, else SQLite at ~/.llm-ledger/ledger.db)"
    )
    demo.add_argument("--dashboard", action="store_true", help="open the dashboard when done")
    # Tests shorten the mock models' latencies; a demo is meant to look like real providers.
    demo.add_argument("--latency-scale", type=_scale, default=1.0, help=argparse.SUPPRESS)
    # Tests fix the hour the history ends in, and with it which sessions meet the incident.
    demo.add_argument("--anchor", type=_anchor, default=None, help=argparse.SUPPRESS)
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
    partitions = db_commands.add_parser(
        "partitions", help="list the events table's monthly partitions (PostgreSQL) and create missing ones"
    )
    partitions.add_argument(
        "--create-ahead",
        type=_months_ahead,
        metavar="N",
        help="first create the missing partitions of this month and the N after it (0 to 36)",
    )
    partitions.add_argument("--database-url", help=url_help)
    partitions.set_defaults(handler=_db_partitions, needs_ledger=True)

    project = commands.add_parser(
        "project", help="bring the read models (the dashboard's figures) up to date with the events"
    )
    project.add_argument("--follow", action="store_true", help="keep applying new events until interrupted")
    project.add_argument(
        "--rebuild", action="store_true", help="empty the read models and replay every event (then --follow, if given)"
    )
    project.add_argument(
        "--batch-size", type=_positive_int, default=5_000, help="events per transaction (default 5000)"
    )
    project.add_argument(
        "--poll-seconds", type=_seconds, default=1.0, help="with --follow: seconds between looks (default 1)"
    )
    project.add_argument("--database-url", help=url_help)
    project.set_defaults(handler=_project, needs_ledger=True)

    dashboard = commands.add_parser("dashboard", help="open the Streamlit dashboard of the ledger")
    dashboard.add_argument("--port", type=_port, default=8501, help="port to serve on (default 8501)")
    dashboard.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); without an OpenID Connect login (LLM_LEDGER_OIDC_ISSUER)"
        " only a loopback address is accepted",
    )
    dashboard.add_argument(
        "--insecure-no-login",
        action="store_true",
        help="without a login, listen on another address all the same: every visitor sees every tenant, so only"
        " behind something that checks who comes in (an authenticating proxy, a port published on 127.0.0.1)",
    )
    dashboard.add_argument("--database-url", help=url_help)
    dashboard.set_defaults(handler=_dashboard, needs_ledger=True)

    audit = commands.add_parser("audit", help="tamper evidence: seal the events, verify the whole ledger")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check every stream's hash chain and shape and every seal; exit 0 clean, 1 broken, 2 or 3 could not"
        " check (llm-ledger --help)",
    )
    verify.add_argument("--tenant", help="only this tenant (default: every tenant)")
    verify.add_argument(
        "--since",
        help="only streams with an event at or after this time (ISO date or date-time, or 30m/24h/7d/2w back),"
        " and the seals made since then or holding such events; the seal chain is always checked in full",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_verify_pins(verify)
    verify.add_argument(
        "--state",
        metavar="PATH",
        help="this command's own record of the heads it verified (a file or directory, created if missing;"
        " default LLM_LEDGER_VERIFY_STATE): a head or tenant seen by an earlier run that is gone fails",
    )
    verify.add_argument(
        "--archive",
        action="append",
        metavar="DIR",
        help="a directory `retention apply --archive` wrote: prove the archived months from its files too"
        " (repeatable; without it they are reported as not checked)",
    )
    verify.add_argument("--no-record", action="store_true", help="do not store this run for the dashboard")
    verify.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="tenants verified at once, each in a worker process with a database connection (default: the cores"
        " it may use, at most 4, for a large ledger, docs/AUDIT.md; 1: in this process); the report is the same"
        " whatever N",
    )
    verify.add_argument("--database-url", help=url_help)
    verify.set_defaults(handler=_audit_verify, needs_ledger=True)
    seal = audit_commands.add_parser(
        "seal", help="seal each tenant's events not sealed yet (signed with LLM_LEDGER_SEAL_KEY when set)"
    )
    seal.add_argument("--tenant", help="only this tenant (default: every tenant)")
    seal.add_argument("--follow", action="store_true", help="keep sealing every --interval seconds until interrupted")
    seal.add_argument("--interval", type=_seconds, default=300.0, help="with --follow: seconds between seals (300)")
    seal.add_argument(
        "--witness",
        metavar="PATH",
        help="append each new seal's head to this file (or PATH/witness.jsonl), kept outside the database"
        " (default LLM_LEDGER_SEAL_WITNESS); a tenant whose newest seal is not the one recorded there is refused"
        " (exit 1)",
    )
    seal.add_argument(
        "--adopt",
        action="store_true",
        help="with --witness: start a new witness on a database sealed already, trusting its current seals",
    )
    seal.add_argument("--database-url", help=url_help)
    seal.set_defaults(handler=_audit_seal, needs_ledger=True)
    keygen = audit_commands.add_parser("keygen", help="print a new Ed25519 key pair for signing seals")
    keygen.set_defaults(handler=_audit_keygen)

    retention = commands.add_parser(
        "retention", help="move whole sealed, verified months of events to a Parquet archive (PostgreSQL)"
    )
    retention_commands = retention.add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    policy_help = {
        "older_than": "the age after which a month may leave, in days or weeks (400d, 60w): the month's end must be"
        " that old",
        "tenant_policy": "a tenant's own age, or keep (never): TENANT=800d, TENANT=keep (repeatable)",
    }
    retention_plan = retention_commands.add_parser(
        "plan", help="say which months would be archived and dropped, and why the others would not (changes nothing)"
    )
    retention_apply = retention_commands.add_parser(
        "apply", help="archive every month that may go to --archive DIR, then drop its partition"
    )
    for command in (retention_plan, retention_apply):
        command.add_argument("--older-than", required=True, help=policy_help["older_than"])
        command.add_argument(
            "--tenant-policy", action="append", metavar="TENANT=AGE", help=policy_help["tenant_policy"]
        )
        _add_verify_pins(command, " the verify made first, and a month they concern is refused")
        command.add_argument("--database-url", help=url_help)
    retention_apply.add_argument("--archive", required=True, metavar="DIR", help="the archive directory (created)")
    retention_plan.set_defaults(handler=_retention_plan, needs_ledger=True)
    retention_apply.set_defaults(handler=_retention_apply, needs_ledger=True)
    erase = commands.add_parser(
        "erase",
        help="erase a session's or a subject's captured content by destroying its data keys (crypto-shredding;"
        " run as a login granted llm_ledger_eraser)",
    )
    erase.add_argument("--tenant", required=True, help="the tenant of the session or subject")
    target = erase.add_mutually_exclusive_group(required=True)
    target.add_argument("--session", help="erase this session's content")
    target.add_argument(
        "--subject", help="erase the content of every session of this subject (ExecutionContext.subject_id)"
    )
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.add_argument("--database-url", help=url_help)
    erase.set_defaults(handler=_erase, needs_ledger=True)
    digest_key = audit_commands.add_parser(
        "digest-key",
        help="print a tenant's digest key for an auditor (derived from LLM_LEDGER_DIGEST_KEY, else"
        " $LLM_LEDGER_HOME/digest.key), or --new: a new digest secret",
    )
    which = digest_key.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", help="the tenant whose key to print (base64; its key id on stderr)")
    which.add_argument(
        "--new", action="store_true", help="print a new secret for LLM_LEDGER_DIGEST_KEY (bare, for a file)"
    )
    digest_key.set_defaults(handler=_audit_digest_key)
    digest = audit_commands.add_parser(
        "digest",
        help="print the keyed digest (hex) of the messages on stdin (a JSON array of {role, content}), or with"
        " --text of the text on stdin, as the audit views hold it",
    )
    key_of = digest.add_mutually_exclusive_group(required=True)
    key_of.add_argument(
        "--key",
        help="the path of a file holding the tenant's digest key (`audit digest-key --tenant T > file`); its"
        " base64 is accepted too, but would be seen in the process list",
    )
    key_of.add_argument("--tenant", help="derive the tenant's key from the digest secret instead")
    digest.add_argument(
        "--text", action="store_true", help="stdin is a response text (or a tool's arguments or result), byte for byte"
    )
    digest.set_defaults(handler=_audit_digest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    AGNO_TELEMETRY.setdefault("false")
    parser = build_parser()
    args = parser.parse_args(argv)
    from llm_ledger.cli_errors import UsageError, exit_code, report
    from llm_ledger.errors import LedgerError
    from llm_ledger.store import migrate

    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return exit_code(UsageError)
    try:
        if getattr(args, "needs_ledger", False):
            # Before the command opens anything: opening a missing SQLite file would create it.
            migrate.require_ledger(_database_url(args))
        return int(handler(args))
    except (LedgerError, KeyboardInterrupt) as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())

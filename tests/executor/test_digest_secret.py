"""Where the digest secret comes from: ``LLM_LEDGER_DIGEST_KEY`` (base64, or a file's path), else the home's
``digest.key``, made once, complete, readable by its owner alone; a bad one is refused, naming what is
wrong. And the keys derived from it: one a tenant, which confirms that tenant's digests alone."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llm_ledger.events import DigestKey, DigestKeyError, DigestSecret
from llm_ledger.executor import digest_secret
from llm_ledger.executor.digest_secret import DIGEST_KEY_FILE, DigestSecretError, load_digest_secret
from tests.digests import key_id, keyed, tenant_key

SECRET = DigestSecret.generate()


def test_the_variable_holds_the_secret_or_names_its_file(tmp_path: Path) -> None:
    assert load_digest_secret({"LLM_LEDGER_DIGEST_KEY": SECRET.text()}).secret == SECRET
    path = tmp_path / "digest-secret"
    path.write_text(SECRET.text() + "\n")
    loaded = load_digest_secret({"LLM_LEDGER_DIGEST_KEY": str(path)})
    assert (loaded.secret, loaded.source) == (SECRET, str(path))


@pytest.mark.parametrize("value", ["not-base64!", "c2hvcnQ=", "/no/such/file"])
def test_a_variable_that_is_no_secret_is_refused_naming_it(value: str) -> None:
    with pytest.raises(DigestSecretError, match="LLM_LEDGER_DIGEST_KEY must be the base64 of 32 bytes"):
        load_digest_secret({"LLM_LEDGER_DIGEST_KEY": value})


def test_a_file_that_is_no_secret_is_refused_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_secret, "_INCOMPLETE_PAUSE", 0)
    path = tmp_path / DIGEST_KEY_FILE
    path.write_text("garbage")
    path.chmod(0o600)
    for create in (True, False):
        with pytest.raises(DigestSecretError, match=f"{path} .the digest secret made by llm-ledger. .*base64 of 32"):
            load_digest_secret({"LLM_LEDGER_HOME": str(tmp_path)}, create=create)


def test_unset_the_home_s_secret_is_made_once_for_its_owner_alone(tmp_path: Path) -> None:
    environ = {"LLM_LEDGER_HOME": str(tmp_path / "home")}
    with pytest.raises(DigestSecretError, match="does not exist and LLM_LEDGER_DIGEST_KEY is not set"):
        load_digest_secret(environ, create=False)
    assert not (tmp_path / "home").exists()

    made = load_digest_secret(environ)
    path = tmp_path / "home" / DIGEST_KEY_FILE
    assert made.source == str(path) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_digest_secret(environ).secret == made.secret == load_digest_secret(environ, create=False).secret


def test_processes_starting_together_end_up_with_one_secret(tmp_path: Path) -> None:
    environ = {"LLM_LEDGER_HOME": str(tmp_path)}
    barrier, found = threading.Barrier(8), []

    def load() -> None:
        barrier.wait()
        found.append(load_digest_secret(environ).secret)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len({secret.secret for secret in found}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [DIGEST_KEY_FILE]


def test_a_home_where_no_file_can_be_made_is_refused_with_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "not-a-directory"
    home.write_text("")
    with pytest.raises(DigestSecretError, match="set LLM_LEDGER_DIGEST_KEY, or LLM_LEDGER_HOME"):
        load_digest_secret({"LLM_LEDGER_HOME": str(home)})


def test_each_tenant_s_key_is_derived_from_the_secret_and_named_by_its_id() -> None:
    acme, globex = SECRET.tenant_key("acme"), SECRET.tenant_key("globex")
    assert acme.key == tenant_key("acme", SECRET.secret) and acme.key_id == key_id(acme.key)
    assert acme.key != globex.key and acme.key_id != globex.key_id
    assert SECRET.tenant_key("acme") is acme, "derived once a tenant"
    assert acme.digest(b"prompt") == keyed("acme", b"prompt", SECRET.secret)
    # A tenant's key handed to an auditor confirms that tenant's digests, not another's.
    assert acme.digest(b"prompt") != globex.digest(b"prompt")
    assert DigestKey.parse(acme.text()) == acme


@pytest.mark.parametrize("text", ["", "AAAA", "!" * 44])
def test_a_key_that_is_not_32_bytes_of_base64_is_refused(text: str) -> None:
    with pytest.raises(DigestKeyError, match="the digest key must be the base64 of 32 bytes"):
        DigestKey.parse(text)
    with pytest.raises(DigestKeyError, match="the digest secret must be the base64 of 32 bytes"):
        DigestSecret.parse(text)


# --- which ledgers may make a secret of their own -----------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql://writer@db/ledger", "postgresql+psycopg://writer@db/ledger"])
def test_a_postgresql_ledger_without_the_variable_is_refused_naming_what_to_do(url: str, tmp_path: Path) -> None:
    environ = {"LLM_LEDGER_HOME": str(tmp_path / "home"), "LLM_LEDGER_DATABASE_URL": url}
    with pytest.raises(DigestSecretError) as refused:
        load_digest_secret(environ)
    said = str(refused.value)
    assert "LLM_LEDGER_DIGEST_KEY is not set" in said and "llm-ledger audit digest-key --new" in said
    assert "writer@" not in said, "the URL is not repeated (it may hold a password)"
    assert not (tmp_path / "home").exists(), "no secret of its own made"
    assert load_digest_secret({**environ, "LLM_LEDGER_DIGEST_KEY": SECRET.text()}).secret == SECRET


def test_an_sqlite_ledger_named_by_url_makes_its_secret_in_the_home(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    made = load_digest_secret({"LLM_LEDGER_HOME": str(tmp_path), "LLM_LEDGER_DATABASE_URL": url})
    assert made.source == str(tmp_path / DIGEST_KEY_FILE)


# --- the home's file is the owner's alone ------------------------------------------------------------------


def _home_with_secret(tmp_path: Path, mode: int = 0o600) -> dict[str, str]:
    path = tmp_path / DIGEST_KEY_FILE
    path.write_text(SECRET.text() + "\n")
    path.chmod(mode)
    return {"LLM_LEDGER_HOME": str(tmp_path)}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_secret_file_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    environ = _home_with_secret(tmp_path, mode)
    for create in (True, False):
        with pytest.raises(DigestSecretError, match=f"has mode {mode:04o}: others than its owner"):
            load_digest_secret(environ, create=create)
    (tmp_path / DIGEST_KEY_FILE).chmod(0o400)
    assert load_digest_secret(environ).secret == SECRET


def test_a_secret_file_of_another_user_is_refused(tmp_path: Path) -> None:
    environ = _home_with_secret(tmp_path)
    other = os.getuid() + 4242
    if os.getuid() != 0:
        pytest.skip("only root may give a file to another user")
    os.chown(tmp_path / DIGEST_KEY_FILE, other, -1)
    with pytest.raises(DigestSecretError, match=f"owned by uid {other}, not this user"):
        load_digest_secret(environ)


def test_a_secret_file_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _home_with_secret(elsewhere)
    home = tmp_path / "home"
    home.mkdir()
    (home / DIGEST_KEY_FILE).symlink_to(elsewhere / DIGEST_KEY_FILE)
    with pytest.raises(DigestSecretError, match="is a symbolic link"):
        load_digest_secret({"LLM_LEDGER_HOME": str(home)})


# --- made complete on a filesystem without hard links --------------------------------------------------------


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    tried: list[str] = []

    def refuse(source: object, target: object) -> None:
        tried.append(str(target))
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    return tried


def test_without_hard_links_the_secret_is_made_in_place_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = _no_hard_links(monkeypatch)
    environ = {"LLM_LEDGER_HOME": str(tmp_path)}
    barrier, found = threading.Barrier(8), []

    def load() -> None:
        barrier.wait()
        found.append(load_digest_secret(environ).secret)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tried, "the link was tried first"
    assert len(found) == 8 and len({secret.secret for secret in found}) == 1
    path = tmp_path / DIGEST_KEY_FILE
    assert [p.name for p in tmp_path.iterdir()] == [DIGEST_KEY_FILE] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DigestSecret.parse(path.read_text()) == found[0]


def test_without_hard_links_a_file_left_incomplete_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_hard_links(monkeypatch)
    monkeypatch.setattr(digest_secret, "_INCOMPLETE_PAUSE", 0)
    path = tmp_path / DIGEST_KEY_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)  # made by a process that died before writing it
    with pytest.raises(DigestSecretError, match=r"stays so \(a process making it died\?\)"):
        load_digest_secret({"LLM_LEDGER_HOME": str(tmp_path)})


def test_a_secret_file_being_written_is_read_once_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / DIGEST_KEY_FILE
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # made, not written yet
    reads = []
    own_file_text = digest_secret._own_file_text

    def read_then_finish(target: Path) -> str:
        text = own_file_text(target)
        reads.append(text)
        if len(reads) == 2:  # the writer finishes after two reads of the empty file
            target.write_text(SECRET.text() + "\n")
        return text

    monkeypatch.setattr(digest_secret, "_own_file_text", read_then_finish)
    monkeypatch.setattr(digest_secret, "_INCOMPLETE_PAUSE", 0)
    assert load_digest_secret({"LLM_LEDGER_HOME": str(tmp_path)}).secret == SECRET
    assert reads == ["", "", SECRET.text() + "\n"]


_LOAD = (
    "import sys\n"
    "from llm_ledger.executor.digest_secret import load_digest_secret\n"
    "sys.stdout.write(load_digest_secret({'LLM_LEDGER_HOME': sys.argv[1]}).secret.text())\n"
)


def test_two_processes_of_one_home_share_one_secret(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "LLM_LEDGER_DIGEST_KEY"}
    processes = [
        subprocess.Popen([sys.executable, "-c", _LOAD, str(tmp_path)], stdout=subprocess.PIPE, env=environment)
        for _ in range(2)
    ]
    secrets = [process.communicate(timeout=120)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert secrets[0] == secrets[1] == (tmp_path / DIGEST_KEY_FILE).read_text().strip()
    assert [p.name for p in tmp_path.iterdir()] == [DIGEST_KEY_FILE]

"""Where the digest secret comes from: ``LLM_LEDGER_DIGEST_KEY`` (base64, or a file's path), else the home's
``digest.key``, made once, complete, readable by its owner alone; a bad one is refused, naming what is
wrong. And the keys derived from it: one a tenant, which confirms that tenant's digests alone."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from llm_ledger.events import DigestKey, DigestKeyError, DigestSecret
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


def test_a_file_that_is_no_secret_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / DIGEST_KEY_FILE
    path.write_text("garbage")
    with pytest.raises(DigestSecretError, match=str(path)):
        load_digest_secret({"LLM_LEDGER_HOME": str(tmp_path)})


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

"""The login's configuration (``LLM_LEDGER_OIDC_*``), the secrets file Streamlit reads it from, what an
identity's claims let a person see, and where a dashboard without a login may listen."""

from __future__ import annotations

import stat
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from llm_ledger.dashboard.access import Access, access_of, stale_login
from llm_ledger.dashboard.login import LoginConfigurationError, OidcSettings
from llm_ledger.dashboard.server import exposure_problem, is_loopback, serving_note, streamlit_command

COOKIE_SECRET = "c" * 32
CONFIGURED = {
    "LLM_LEDGER_OIDC_ISSUER": "https://id.example/realms/focal/",
    "LLM_LEDGER_OIDC_CLIENT_ID": "llm-ledger",
    "LLM_LEDGER_OIDC_CLIENT_SECRET": "s3cret",
    "LLM_LEDGER_OIDC_REDIRECT_URI": "https://ledger.example/oauth2callback",
    "LLM_LEDGER_OIDC_COOKIE_SECRET": COOKIE_SECRET,
}
OIDC = OidcSettings(
    "https://id.example", "llm-ledger", "s3cret", "https://ledger.example/oauth2callback", COOKIE_SECRET
)


def test_without_an_issuer_there_is_no_login() -> None:
    assert OidcSettings.from_env({}) is None
    assert OidcSettings.from_env({"LLM_LEDGER_OIDC_CLIENT_ID": "llm-ledger"}) is None


def test_reads_the_provider_the_client_and_the_claims_with_their_defaults() -> None:
    assert OidcSettings.from_env(CONFIGURED) == OidcSettings(
        issuer="https://id.example/realms/focal",
        client_id="llm-ledger",
        client_secret="s3cret",
        redirect_uri="https://ledger.example/oauth2callback",
        cookie_secret=COOKIE_SECRET,
        tenant_claim="tenant",
        operators_claim="groups",
        operators_group="llm-ledger-operators",
    )
    claims = {
        "LLM_LEDGER_OIDC_TENANT_CLAIM": "org",
        "LLM_LEDGER_OIDC_OPERATORS_CLAIM": "roles",
        "LLM_LEDGER_OIDC_OPERATORS_GROUP": "sre",
    }
    settings = OidcSettings.from_env(CONFIGURED | claims)
    assert settings is not None
    assert (settings.tenant_claim, settings.operators_claim, settings.operators_group) == ("org", "roles", "sre")


def test_an_issuer_without_the_rest_names_every_missing_variable() -> None:
    with pytest.raises(LoginConfigurationError) as raised:
        OidcSettings.from_env({"LLM_LEDGER_OIDC_ISSUER": "https://id.example", "LLM_LEDGER_OIDC_CLIENT_ID": "x"})
    message = str(raised.value)
    for name in ("LLM_LEDGER_OIDC_CLIENT_SECRET", "LLM_LEDGER_OIDC_REDIRECT_URI", "LLM_LEDGER_OIDC_COOKIE_SECRET"):
        assert name in message
    assert "LLM_LEDGER_OIDC_CLIENT_ID," not in message


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("LLM_LEDGER_OIDC_ISSUER", "id.example", "LLM_LEDGER_OIDC_ISSUER must be the provider's http(s) address"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://ledger.example/", "with the path /oauth2callback"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "/oauth2callback", "LLM_LEDGER_OIDC_REDIRECT_URI must be"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "http://ledger.example/oauth2callback", "plain http is for this machine"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "http://127.0.0.1.example/oauth2callback", "plain http is for this"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://a:b@ledger.example/oauth2callback", "it names a user"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://evil@ledger.example/oauth2callback", "it names a user"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://ledger.example/oauth2callback?next=x", "a query or a fragment"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://ledger.example/oauth2callback#x", "a query or a fragment"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://ledger.example/oauth2callback?", "a query or a fragment"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://ledger.example/evil/oauth2callback", "its path is '/evil/oauth2"),
        ("LLM_LEDGER_OIDC_REDIRECT_URI", "https://ledger.example/oauth2callback/", "its path is"),
        ("LLM_LEDGER_OIDC_COOKIE_SECRET", "short", "at least 32 characters (openssl rand -base64 32 makes one), got 5"),
    ],
)
def test_an_unusable_value_is_refused_naming_its_variable(name: str, value: str, said: str) -> None:
    with pytest.raises(LoginConfigurationError, match=said.replace("(", r"\(").replace(")", r"\)")):
        OidcSettings.from_env(CONFIGURED | {name: value})


def test_the_secrets_are_streamlits_auth_section_and_no_value_can_break_out_of_its_string() -> None:
    hostile = OidcSettings(
        OIDC.issuer, 'x"\nexpose_tokens = ["id", "access"]\n#', "s\\", OIDC.redirect_uri, COOKIE_SECRET
    )

    assert tomllib.loads(OIDC.secrets_toml()) == {
        "auth": {
            "redirect_uri": "https://ledger.example/oauth2callback",
            "cookie_secret": COOKIE_SECRET,
            "client_id": "llm-ledger",
            "client_secret": "s3cret",
            "server_metadata_url": "https://id.example/.well-known/openid-configuration",
        }
    }
    auth = tomllib.loads(hostile.secrets_toml())["auth"]
    assert (auth["client_id"], auth["client_secret"]) == (hostile.client_id, "s\\")
    assert "expose_tokens" not in auth


TAKEN_REDIRECTS = [
    "http://127.0.0.1:8501/oauth2callback",
    "http://localhost/oauth2callback",
    "http://[::1]:8501/oauth2callback",
    "https://ledger.example:8443/oauth2callback",
]


@pytest.mark.parametrize("redirect_uri", TAKEN_REDIRECTS)
def test_plain_http_is_taken_for_this_machine_and_https_for_any_host(redirect_uri: str) -> None:
    settings = OidcSettings.from_env(CONFIGURED | {"LLM_LEDGER_OIDC_REDIRECT_URI": redirect_uri})
    assert settings is not None and settings.redirect_uri == redirect_uri


def test_a_character_beyond_the_basic_plane_is_written_as_itself() -> None:
    settings = replace(OIDC, client_secret="s3cret-\U0001f511-\u00e9")
    assert tomllib.loads(settings.secrets_toml())["auth"]["client_secret"] == "s3cret-\U0001f511-\u00e9"


@pytest.mark.parametrize("secret", ["s3cret\x7f", "s3cret\udc80"])
def test_a_value_toml_cannot_hold_is_refused_before_streamlit_reads_it(secret: str) -> None:
    with pytest.raises(LoginConfigurationError, match="a value holds a character TOML refuses"):
        replace(OIDC, client_secret=secret).secrets_toml()


def test_the_secrets_file_is_readable_by_its_user_alone_and_never_overwritten(tmp_path: Path) -> None:
    path = OIDC.write_secrets(tmp_path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text())["auth"]["client_secret"] == "s3cret"
    with pytest.raises(FileExistsError):
        OIDC.write_secrets(tmp_path)


@pytest.mark.parametrize(
    ("claims", "access"),
    [
        ({"sub": "1", "email": "alice@acme.example", "tenant": "acme"}, Access("alice@acme.example", tenant="acme")),
        ({"sub": "2", "groups": ["support", "llm-ledger-operators"]}, Access("2", every_tenant=True)),
        ({"sub": "3", "groups": "llm-ledger-operators"}, Access("3", every_tenant=True)),
        # The operators' group wins over a tenant: an operator of one tenant's staff still sees every tenant.
        ({"sub": "4", "tenant": "acme", "groups": ["llm-ledger-operators"]}, Access("4", every_tenant=True)),
        ({"sub": "5", "groups": ["llm-ledger-operators-of-acme"]}, Access("5")),
        ({"sub": "6"}, Access("6")),
        # A tenant claim that is not one name grants nothing rather than a guess.
        ({"sub": "7", "tenant": ["acme", "globex"]}, Access("7")),
        ({"sub": "8", "tenant": " "}, Access("8")),
        ({"sub": "9", "tenant": 42}, Access("9")),
    ],
)
def test_the_claims_grant_one_tenant_every_tenant_or_nothing(claims: dict[str, object], access: Access) -> None:
    assert access_of(claims, OIDC) == access


def test_the_claim_names_are_the_configured_ones() -> None:
    custom = replace(OIDC, tenant_claim="org", operators_claim="roles", operators_group="sre")

    assert access_of({"sub": "a", "org": "acme", "tenant": "globex"}, custom) == Access("a", tenant="acme")
    assert access_of({"sub": "b", "roles": ["sre"]}, custom) == Access("b", every_tenant=True)
    assert access_of({"sub": "c", "groups": ["llm-ledger-operators"]}, custom) == Access("c")


def test_on_a_dashboard_bound_to_one_tenant_an_operator_sees_it_and_another_tenants_person_nothing() -> None:
    assert Access("op", every_tenant=True).within("acme") == Access("op", tenant="acme")
    assert Access("alice", tenant="acme").within("acme") == Access("alice", tenant="acme")
    assert not Access("bob", tenant="globex").within("acme").sees_anything
    assert Access("bob", tenant="globex").within(None) == Access("bob", tenant="globex")


@pytest.mark.parametrize(("address", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True)])
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.10", "not an address"])
def test_other_addresses_are_not_loopback(address: str) -> None:
    assert not is_loopback(address)


def test_without_a_login_only_a_loopback_address_or_the_explicit_flag_may_be_listened_on() -> None:
    assert exposure_problem("127.0.0.1", None, insecure_no_login=False) is None
    assert exposure_problem("localhost", None, insecure_no_login=False) is None
    problem = exposure_problem("0.0.0.0", None, insecure_no_login=False)
    assert problem is not None and "--insecure-no-login" in problem and "LLM_LEDGER_OIDC_ISSUER" in problem
    assert exposure_problem("0.0.0.0", None, insecure_no_login=True) is None
    assert exposure_problem("0.0.0.0", OIDC, insecure_no_login=False) is None


def test_the_console_says_who_may_reach_the_dashboard() -> None:
    assert serving_note("127.0.0.1", 8501, None) == (
        "llm-ledger dashboard: http://127.0.0.1:8501 (no login, LLM_LEDGER_OIDC_ISSUER is not set: served to this"
        " machine only)"
    )
    assert "whoever reaches 0.0.0.0:8501 sees every tenant" in serving_note("0.0.0.0", 8501, None)
    assert serving_note("0.0.0.0", 8501, OIDC).endswith("(login with OpenID Connect at https://id.example)")


def _options(command: list[str], name: str) -> list[str]:
    return [argument.split("=", 1)[1] for argument in command if argument.startswith(f"--{name}=")]


def test_without_a_login_the_stream_answers_this_machines_names_and_the_address_alone() -> None:
    command = streamlit_command(8501, "127.0.0.2")

    assert _options(command, "server.allowedHosts") == ["localhost", "127.0.0.1", "::1", "127.0.0.2"]
    assert _options(command, "client.showErrorDetails") == []


def test_with_a_login_the_stream_answers_the_redirect_uris_host_and_shows_no_error_details(tmp_path: Path) -> None:
    oidc = replace(OIDC, redirect_uri="https://ledger.example:8443/oauth2callback")
    command = streamlit_command(8501, "0.0.0.0", tmp_path / "secrets.toml", oidc)

    assert _options(command, "server.allowedHosts") == ["ledger.example"]
    assert _options(command, "client.showErrorDetails") == ["none"]


def test_no_request_header_can_name_who_is_looking(tmp_path: Path) -> None:
    for command in (streamlit_command(8501, "127.0.0.1"), streamlit_command(8501, "::", tmp_path / "s.toml", OIDC)):
        assert _options(command, "server.trustedUserHeaders") == ["{}"]


NOW = 1_800_000_000.0
CURRENT = {"sub": "ada", "exp": int(NOW) + 300, "iss": "https://id.example/", "aud": ["llm-ledger", "other"]}


def test_a_current_identity_from_this_provider_for_this_client_logs_in() -> None:
    assert stale_login(CURRENT, OIDC, NOW) is None
    assert stale_login(CURRENT | {"aud": "llm-ledger", "iss": "https://id.example"}, OIDC, NOW) is None


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"exp": int(NOW)}, "the login has expired"),
        ({"exp": int(NOW) - 86_400 * 29}, "the login has expired"),
        ({"exp": None}, "the identity carries no expiry"),
        ({"exp": "1900000000"}, "the identity carries no expiry"),
        ({"exp": True}, "the identity carries no expiry"),
        ({"iss": "https://evil.example"}, "the identity was issued by another provider"),
        ({"iss": None}, "the identity was issued by another provider"),
        ({"aud": "another-client"}, "the identity was issued for another application"),
        ({"aud": ["another-client"]}, "the identity was issued for another application"),
        ({"aud": None}, "the identity was issued for another application"),
    ],
)
def test_an_expired_foreign_or_misaddressed_identity_logs_nobody_in(changed: dict[str, object], reason: str) -> None:
    assert stale_login(CURRENT | changed, OIDC, NOW) == reason

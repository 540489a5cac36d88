"""Who may see what: a logged-in person's identity claims, as the dashboard's OpenID Connect settings
read them, become the tenant they may see, every tenant (an operator), or nothing. Plain Python."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llm_ledger.dashboard.login import OidcSettings


@dataclass(frozen=True, slots=True)
class Access:
    """What one person may see: ``every_tenant`` (an operator), else ``tenant`` alone; neither is nothing."""

    who: str
    tenant: str | None = None
    every_tenant: bool = False

    @property
    def sees_anything(self) -> bool:
        return self.every_tenant or self.tenant is not None

    def within(self, fixed_tenant: str | None) -> Access:
        """This access on a dashboard bound to ``fixed_tenant`` (``LLM_LEDGER_DASHBOARD_TENANT``): an
        operator sees that tenant, a person of that tenant theirs, anyone else nothing."""
        if fixed_tenant is None or self.tenant == fixed_tenant:
            return self
        return Access(self.who, tenant=fixed_tenant) if self.every_tenant else Access(self.who)


def access_of(claims: Mapping[str, object], oidc: OidcSettings) -> Access:
    """The access an ID token's ``claims`` grant. Membership of the operators' group wins over a tenant
    claim; a tenant claim that is not one non-empty string (a list, a number, "") grants nothing, as a
    missing one does, rather than guessing which tenant was meant."""
    who = next((str(claims[key]) for key in ("email", "preferred_username", "name", "sub") if claims.get(key)), "")
    if _is_member(claims.get(oidc.operators_claim), oidc.operators_group):
        return Access(who, every_tenant=True)
    tenant = claims.get(oidc.tenant_claim)
    if isinstance(tenant, str) and tenant.strip():
        return Access(who, tenant=tenant)
    return Access(who)


def stale_login(claims: Mapping[str, object], oidc: OidcSettings, now: float) -> str | None:
    """Why an ID token's ``claims`` no longer log anyone in, or None. Streamlit keeps the claims in its
    login cookie for 30 days whatever the token said, so the dashboard checks them on every run: expired
    (``exp``, seconds since the epoch, at or before ``now``), issued by another provider (``iss``), or
    for another client (``aud``)."""
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return "the identity carries no expiry"
    if expires <= now:
        return "the login has expired"
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or issuer.rstrip("/") != oidc.issuer:
        return "the identity was issued by another provider"
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if oidc.client_id not in audiences:
        return "the identity was issued for another application"
    return None


def _is_member(groups: object, group: str) -> bool:
    """Providers give groups as a list of names (Keycloak, Okta, Entra ID), some as one name."""
    if isinstance(groups, str):
        return groups == group
    if isinstance(groups, list | tuple):
        return group in groups
    return False

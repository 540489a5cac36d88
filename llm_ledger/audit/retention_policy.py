"""How long each tenant's events stay in the database: a default age (``--older-than 400d``) and per-tenant
ages (``--tenant-policy acme=800d``, or ``=keep`` for never), given on each run and recorded with it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from llm_ledger.audit.errors import AuditConfigurationError

KEEP = "keep"
_AGE = re.compile(r"(\d+)\s*([dw])")


def parse_age(text: str, what: str = "--older-than") -> timedelta:
    """``400d`` or ``60w``: an age in whole days or weeks (a month has no fixed length; a day has)."""
    matched = _AGE.fullmatch(text.strip())
    if not matched:
        raise AuditConfigurationError(f"{what} {text!r}: expected an age in days or weeks, such as 400d or 60w")
    amount = int(matched.group(1))
    if amount == 0:
        raise AuditConfigurationError(f"{what} {text!r}: an age of zero would let events leave as they arrive")
    try:
        return timedelta(days=amount) if matched.group(2) == "d" else timedelta(weeks=amount)
    except OverflowError:
        raise AuditConfigurationError(f"{what} {text!r}: too large") from None


def parse_tenant_policy(text: str) -> tuple[str, timedelta | None]:
    """``TENANT=AGE`` or ``TENANT=keep``; split at the last ``=`` (a tenant id may hold one)."""
    tenant, sign, age = text.rpartition("=")
    if not sign or not tenant:
        raise AuditConfigurationError(f"--tenant-policy {text!r}: expected TENANT=AGE (acme=800d) or TENANT={KEEP}")
    if age.strip() == KEEP:
        return tenant, None
    return tenant, parse_age(age, f"--tenant-policy {tenant}=")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """``default``: the age after which a tenant's month may leave; ``tenants``: overrides (None: keep)."""

    default: timedelta
    tenants: Mapping[str, timedelta | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, older_than: str, tenant_policies: Iterable[str] = ()) -> RetentionPolicy:
        tenants: dict[str, timedelta | None] = {}
        for text in tenant_policies:
            tenant, age = parse_tenant_policy(text)
            if tenant in tenants:
                raise AuditConfigurationError(f"--tenant-policy: tenant {tenant!r} is given twice")
            tenants[tenant] = age
        return cls(parse_age(older_than), tenants)

    def age_for(self, tenant_id: str) -> timedelta | None:
        return self.tenants.get(tenant_id, self.default)

    def to_json(self) -> str:
        def shown(age: timedelta | None) -> str:
            return KEEP if age is None else f"{age.days}d"

        return json.dumps(
            {"older_than": shown(self.default), "tenants": {t: shown(a) for t, a in sorted(self.tenants.items())}},
            sort_keys=True,
        )

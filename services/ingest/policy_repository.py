"""SQL of agent policies (one row per organization), on a tenant transaction the caller
owns (never commits). Row-level security scopes every statement to the tenant."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ingest.agent_policy import AgentPolicy, OrganizationPolicy, document_from_json, document_json

# The document only when its version is not the one the caller holds: a cache refresh
# normally costs one index probe and a bigint, not a parse of every override.
_READ = """
    select version, case when version = :known then null else document end as document, updated_at,
        updated_by::text as updated_by
    from ingest.agent_policies where organization_id = :org
"""

# Compare-and-set in one statement. Under READ COMMITTED a concurrent change holding the
# row makes this wait, then re-checks the version on the row it committed: of two changes
# expecting the same version exactly one matches; the other updates nothing (ABORTED).
_REPLACE_IF_VERSION = """
    update ingest.agent_policies
    set version = version + 1, document = cast(:document as jsonb), updated_at = now(), updated_by = :by
    where organization_id = :org and version = :expected
    returning version, updated_at
"""

# No expected version: whatever is stored is replaced (the version still goes up by one).
_REPLACE = """
    insert into ingest.agent_policies as p (organization_id, version, document, updated_at, updated_by)
    values (:org, 1, cast(:document as jsonb), now(), :by)
    on conflict (organization_id) do update
        set version = p.version + 1, document = excluded.document, updated_at = excluded.updated_at,
            updated_by = excluded.updated_by
    returning version, updated_at
"""


def _loaded(row: Any) -> OrganizationPolicy:
    document = row.document if isinstance(row.document, dict) else json.loads(row.document)
    defaults, users = document_from_json(document)
    return OrganizationPolicy(int(row.version), defaults, users, row.updated_at, row.updated_by)


class AgentPolicyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def read(self, organization_id: str, known: OrganizationPolicy | None = None) -> OrganizationPolicy:
        """The stored policy (version 0 and nothing set when none is); ``known`` itself
        when it is still the stored version."""
        found = await self._conn.execute(
            text(_READ), {"org": organization_id, "known": known.version if known is not None else -1}
        )
        row = found.one_or_none()
        if row is None:
            return OrganizationPolicy()
        if row.document is None and known is not None:
            return known
        return _loaded(row)

    async def replace(
        self,
        organization_id: str,
        expected_version: int,
        defaults: AgentPolicy,
        users: dict[str, AgentPolicy],
        updated_by: str | None,
    ) -> OrganizationPolicy | None:
        """Stores the policy with the next version, when the stored version is
        ``expected_version`` (0: whatever it is); None when it is not."""
        params = {
            "org": organization_id,
            "document": json.dumps(document_json(defaults, users)),
            "by": updated_by,
            "expected": expected_version,
        }
        found = await self._conn.execute(text(_REPLACE_IF_VERSION if expected_version else _REPLACE), params)
        row = found.one_or_none()
        if row is None:
            return None
        return OrganizationPolicy(int(row.version), defaults, users, row.updated_at, updated_by)

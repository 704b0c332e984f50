"""The agent policy's use cases: a user's effective policy, the organization's stored one,
and replacing it (compare-and-set on its version, with its AGENT_POLICY_UPDATED event in
the same transaction).

Who may: any user reads their own effective policy; admins and managers read and
replace their organization's; service identities read any organization's (they name it,
and the user), and never replace one. Another organization is never reachable by a user:
the tenant is the token's, and row-level security holds every statement to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.ingest.agent_policy import (
    AgentPolicy,
    EffectivePolicy,
    OrganizationPolicy,
    checked_document,
    updated_event,
)
from services.ingest.domain import require_uuid
from services.ingest.policy_cache import AgentPolicyCache, Reader
from services.ingest.policy_repository import AgentPolicyRepository
from services.ingest.repository import AGENT_POLICY_UPDATED, SCHEMA
from workpulse import outbox
from workpulse.db import UnitOfWork
from workpulse.errors import Conflict, InvalidArgument, PermissionDenied
from workpulse.identity import Principal

MANAGING_ROLES = ("admin", "manager")


def stored_policies(uow: UnitOfWork) -> Reader:
    """Reads an organization's stored policy in a transaction of its tenant (the cache's reader)."""

    async def read(organization_id: str, known: OrganizationPolicy | None) -> OrganizationPolicy:
        async with uow.tenant(organization_id) as conn:
            return await AgentPolicyRepository(conn).read(organization_id, known)

    return read


@dataclass
class AgentPolicies:
    """What the policy use cases need, wired by the composition root."""

    uow: UnitOfWork
    cache: AgentPolicyCache

    async def fresh(self, organization_id: str) -> OrganizationPolicy:
        """From the database, and remembered: a caller of the RPCs sees what is stored now."""
        read = stored_policies(self.uow)
        found = await self.uow.retrying(lambda: read(organization_id, None))
        self.cache.remember(organization_id, found)
        return found


async def effective_policy(
    policies: AgentPolicies, caller: Principal, organization_id: str, user_id: str
) -> tuple[int, EffectivePolicy]:
    """(version, policy) of the caller, or of the user a service identity names."""
    if caller.is_service:
        org = require_uuid(organization_id, "organization_id")
        user = require_uuid(user_id, "user_id")
    else:
        org, user = caller.tenant(), caller.subject  # the request's ids are for services only
    stored = await policies.fresh(org)
    return stored.version, stored.effective(user)


def _managed_organization(caller: Principal) -> str:
    if caller.is_service:
        raise PermissionDenied("agent policies are changed by admins and managers")
    caller.require_role(*MANAGING_ROLES)
    return caller.tenant()


async def organization_policy(policies: AgentPolicies, caller: Principal, organization_id: str) -> OrganizationPolicy:
    """The organization's stored policy: the caller's own (admins, managers), or the one
    a service identity names."""
    org = require_uuid(organization_id, "organization_id") if caller.is_service else _managed_organization(caller)
    return await policies.fresh(org)


async def replace_policy(
    policies: AgentPolicies,
    caller: Principal,
    expected_version: int,
    defaults: AgentPolicy,
    users: list[tuple[str, AgentPolicy]],
) -> OrganizationPolicy:
    """Stores the caller's organization's policy as the next version. With
    ``expected_version`` (not 0), Conflict when the stored version is another, and
    nothing is stored."""
    org = _managed_organization(caller)  # the role before the body: nobody else learns its rules
    if expected_version < 0:
        raise InvalidArgument("expected_version: must be 0 (any) or a stored version", field="expected_version")
    checked_defaults, by_user = checked_document(defaults, users)
    updated_by = caller.subject if _is_uuid(caller.subject) else None

    async def work() -> OrganizationPolicy:
        async with policies.uow.tenant(org) as conn:
            stored = await AgentPolicyRepository(conn).replace(
                org, expected_version, checked_defaults, by_user, updated_by
            )
            if stored is None:
                raise Conflict(
                    f"expected_version: the policy is no longer version {expected_version}; read it again",
                    field="expected_version",
                )
            await outbox.add(conn, SCHEMA, org, AGENT_POLICY_UPDATED, updated_event(org, stored))
            return stored

    stored = await policies.uow.retrying(work)
    policies.cache.remember(org, stored)  # this replica's streams see it at once; others within the TTL
    return stored


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

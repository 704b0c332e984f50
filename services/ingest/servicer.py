"""The IngestService servicer: unpack the request, call one use case, pack the reply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC

import grpc
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.ingest import policy_use_cases, use_cases
from services.ingest.domain import AgentClock
from services.ingest.messages import batch_ack, batch_response, incoming_batch, incoming_event, totals_message
from services.ingest.policy_messages import organization_message, policy_message, policy_of, users_of
from services.ingest.policy_use_cases import AgentPolicies
from services.ingest.presence import AgentPresence
from services.ingest.stream import acknowledged
from services.ingest.use_cases import Ingest
from workpulse import errors
from workpulse.identity import Principal
from workpulse.ingest.v1 import ingest_pb2 as pb
from workpulse.ingest.v1 import ingest_pb2_grpc as pb_grpc
from workpulse.interceptors import STATUS_OF, principal

SERVICE_NAME = "workpulse.ingest.v1.IngestService"
# Called by the sessions service as it stops a session: never by a user.
SERVICE_METHODS = ("CloseSession",)


class IngestServicer(pb_grpc.IngestServiceServicer):
    def __init__(
        self, ingest: Ingest, presence: AgentPresence, policies: AgentPolicies, *, max_in_flight: int = 4
    ) -> None:
        self._ingest = ingest
        self._presence = presence
        self._policies = policies
        self._max_in_flight = max_in_flight

    async def RecordActivity(self, request: pb.RecordActivityRequest, context: object) -> pb.RecordActivityResponse:
        outcome = await use_cases.record_event(
            self._ingest, principal(), request.session_id, incoming_event(request.event)
        )
        only = outcome.outcomes[0]
        body = batch_response(outcome)
        return pb.RecordActivityResponse(
            status=body.results[0].status if body.results else pb.EVENT_STATUS_ACCEPTED,
            client_event_id=only.client_event_id,
            session=totals_message(outcome.session),
            totals_pending=outcome.totals_pending,
        )

    async def RecordActivityBatch(
        self, request: pb.RecordActivityBatchRequest, context: object
    ) -> pb.RecordActivityBatchResponse:
        events = incoming_batch(request.events)
        outcome = await use_cases.record_batch(self._ingest, principal(), request.session_id, events)
        return batch_response(outcome)

    async def StreamActivity(
        self, request_iterator: AsyncIterator[pb.StreamActivityRequest], context: object
    ) -> AsyncIterator[pb.StreamActivityResponse]:
        caller = principal()

        clock = AgentClock()  # this agent's, measured over its stream

        async def handle(batch: pb.StreamActivityRequest) -> pb.StreamActivityResponse:
            if batch.HasField("agent_time"):
                clock.observe(batch.agent_time.ToDatetime(tzinfo=UTC), self._ingest.clock())
            return await self._acknowledge(caller, batch, clock)

        async with self._presence.connected(caller):
            async for ack in acknowledged(request_iterator, handle, max_in_flight=self._max_in_flight):
                yield ack

    async def CloseSession(self, request: pb.CloseSessionRequest, context: object) -> pb.CloseSessionResponse:
        end = await use_cases.close_session(self._ingest, request.organization_id, request.session_id)
        reply = pb.CloseSessionResponse()
        reply.end_time.FromDatetime(end.astimezone(UTC))
        return reply

    async def GetAgentPolicy(self, request: pb.GetAgentPolicyRequest, context: object) -> pb.GetAgentPolicyResponse:
        version, policy = await policy_use_cases.effective_policy(
            self._policies, principal(), request.organization_id, request.user_id
        )
        return pb.GetAgentPolicyResponse(version=version, policy=policy_message(policy))

    async def GetOrganizationAgentPolicy(
        self, request: pb.GetOrganizationAgentPolicyRequest, context: object
    ) -> pb.GetOrganizationAgentPolicyResponse:
        stored = await policy_use_cases.organization_policy(self._policies, principal(), request.organization_id)
        return pb.GetOrganizationAgentPolicyResponse(policy=organization_message(stored))

    async def PutOrganizationAgentPolicy(
        self, request: pb.PutOrganizationAgentPolicyRequest, context: object
    ) -> pb.PutOrganizationAgentPolicyResponse:
        stored = await policy_use_cases.replace_policy(
            self._policies, principal(), request.expected_version, policy_of(request.defaults), users_of(request.users)
        )
        return pb.PutOrganizationAgentPolicyResponse(policy=organization_message(stored))

    async def _acknowledge(
        self, caller: Principal, batch: pb.StreamActivityRequest, clock: AgentClock
    ) -> pb.StreamActivityResponse:
        """One batch's acknowledgement; a batch that fails carries its status instead."""
        if not batch.batch_id:
            return self._failed(caller, batch, grpc.StatusCode.INVALID_ARGUMENT, "batch_id: required")
        try:
            events = incoming_batch(batch.events)
            outcome = await use_cases.record_batch(self._ingest, caller, batch.session_id, events, clock)
        except errors.WorkPulseError as exc:
            code = next(c for k, c in STATUS_OF.items() if isinstance(exc, k))
            return self._failed(caller, batch, code, exc.message)
        except (DBAPIError, PoolTimeout, OSError):
            return self._failed(caller, batch, grpc.StatusCode.UNAVAILABLE, "database unavailable; resend the batch")
        return batch_ack(batch.batch_id, outcome)

    def _failed(
        self, caller: Principal, batch: pb.StreamActivityRequest, code: grpc.StatusCode, message: str
    ) -> pb.StreamActivityResponse:
        return pb.StreamActivityResponse(
            batch_id=batch.batch_id,
            status_code=code.value[0],
            status_message=message,
            policy_version=use_cases.known_policy_version(self._ingest, caller),
        )

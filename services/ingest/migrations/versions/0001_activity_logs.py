"""Activity logs (partitioned by day on their timestamp), partition maintenance and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from workpulse.migrate import outbox_ddl, tenant_table_policies

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The unique key of an event doubles as the primary key: it must contain the partition
# key, and it is what makes a resent event a no-op (ON CONFLICT DO NOTHING).
_TABLE = """
create table ingest.activity_logs (
    organization_id uuid not null,
    id uuid not null default gen_random_uuid(),
    session_id uuid not null,
    user_id uuid not null,
    "timestamp" timestamptz not null,
    activity_type text not null check (activity_type in ('active', 'idle')),
    duration_seconds integer not null check (duration_seconds between 0 and 86400),
    app_name text check (length(app_name) <= 255),
    url text check (length(url) <= 2048),
    screenshot_timestamp timestamptz,
    client_event_id text not null check (length(client_event_id) between 1 and 160),
    created_at timestamptz not null default now(),
    primary key (organization_id, session_id, client_event_id, "timestamp")
) partition by range ("timestamp")
"""

# Runs as the schema owner (SECURITY DEFINER) so the runtime roles need no DDL rights;
# only the maintenance role may call it. Rows that landed in the DEFAULT partition for a
# day being created are moved into the new partition before it is attached.
_ENSURE = r"""
create function ingest.ensure_activity_partitions(first_day date, last_day date)
returns setof text
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
as $fn$
declare
    day date := first_day;
    part text;
    lower_bound timestamptz;
    upper_bound timestamptz;
begin
    perform pg_advisory_xact_lock(hashtext('ingest.activity_logs partitions'));
    while day <= last_day loop
        part := 'activity_logs_p' || to_char(day, 'YYYYMMDD');
        lower_bound := day::timestamp at time zone 'UTC';
        upper_bound := (day + 1)::timestamp at time zone 'UTC';
        if to_regclass('ingest.' || part) is null then
            execute format(
                'create table ingest.%I (like ingest.activity_logs including defaults including constraints)', part);
            execute format(
                'with moved as (delete from ingest.activity_logs_default where "timestamp" >= %L and "timestamp" < %L '
                'returning *) insert into ingest.%I select * from moved', lower_bound, upper_bound, part);
            execute format(
                'alter table ingest.activity_logs attach partition ingest.%I for values from (%L) to (%L)',
                part, lower_bound, upper_bound);
            return next part;
        end if;
        day := day + 1;
    end loop;
end
$fn$
"""

_DROP = r"""
create function ingest.drop_activity_partitions_before(cutoff date)
returns setof text
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    part text;
begin
    perform pg_advisory_xact_lock(hashtext('ingest.activity_logs partitions'));
    for part in
        select c.relname from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        join pg_namespace n on n.oid = c.relnamespace
        where i.inhparent = 'ingest.activity_logs'::regclass and n.nspname = 'ingest'
          and c.relname ~ '^activity_logs_p[0-9]{8}$'
          and to_date(substr(c.relname, 16), 'YYYYMMDD') + 1 <= cutoff
        order by c.relname
    loop
        execute format('alter table ingest.activity_logs detach partition ingest.%I', part);
        execute format('drop table ingest.%I', part);
        return next part;
    end loop;
end
$fn$
"""

DDL = [
    _TABLE,
    "create table ingest.activity_logs_default partition of ingest.activity_logs default",
    # The scheduler's per-user, per-day reports.
    'create index activity_logs_by_user on ingest.activity_logs (organization_id, user_id, "timestamp")',
    *tenant_table_policies("ingest.activity_logs"),
    _ENSURE,
    _DROP,
    "revoke all on function ingest.ensure_activity_partitions(date, date) from public",
    "revoke all on function ingest.drop_activity_partitions_before(date) from public",
    "grant execute on function ingest.ensure_activity_partitions(date, date) to workpulse_maintenance",
    "grant execute on function ingest.drop_activity_partitions_before(date) to workpulse_maintenance",
    "select ingest.ensure_activity_partitions(current_date - 7, current_date + 14)",
    *outbox_ddl("ingest"),
    # Totals hand-offs still waiting for sessions, looked up per session when a resent
    # batch turns out to be all duplicates (its first attempt's hand-off may be pending).
    "create index outbox_pending_totals on ingest.outbox ((payload ->> 'session_id'), id) "
    "where topic = 'session_totals' and published_at is null",
]


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("drop table if exists ingest.outbox")
    op.execute("drop function if exists ingest.drop_activity_partitions_before(date)")
    op.execute("drop function if exists ingest.ensure_activity_partitions(date, date)")
    op.execute("drop table if exists ingest.activity_logs")

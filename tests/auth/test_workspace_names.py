"""Workspace names (issue 10) without the service: the rule, the derivation from an
organization's name, the candidates tried when it is taken, and the migration that names
the organizations that existed before (on a database of its own, stopped at 0001)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from services.auth.domain import check_workspace, derive_workspace, workspace_candidates
from workpulse.db import sqlalchemy_url
from workpulse.errors import InvalidArgument
from workpulse.migrate import alembic_config, ensure_roles

RULE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def _valid(name: str) -> bool:
    return 3 <= len(name) <= 63 and RULE.fullmatch(name) is not None


@pytest.mark.parametrize(
    ("organization_name", "workspace"),
    [
        ("Acme", "acme"),
        ("Acme Corp.", "acme-corp"),
        ("  --Acme   Corp!!  ", "acme-corp"),
        ("Café Zürich GmbH", "cafe-zurich-gmbh"),
        ("Straße & Söhne", "strasse-and-sohne"),
        ("Łódź Æther Øre", "lodz-aether-ore"),
        ("\uff21\uff22\uff23 \uff23\uff4f", "abc-co"),  # full-width letters
        ("3M", "org-3m"),
        ("HP", "org-hp"),
        ("X", "org-x"),
        ("株式会社", "org"),
        ("!!!", "org"),
        ("Team_42 (EU)", "team-42-eu"),
    ],
)
def test_a_workspace_name_is_derived_from_the_organization_name(organization_name: str, workspace: str) -> None:
    assert derive_workspace(organization_name) == workspace


def test_a_long_organization_name_is_cut_to_63_without_a_trailing_hyphen() -> None:
    derived = derive_workspace("word " * 40)
    assert len(derived) <= 63 and _valid(derived)
    assert derive_workspace("a" * 62 + " b") == "a" * 62


@given(st.text(max_size=300))
def test_every_derived_name_and_candidate_follows_the_rule(organization_name: str) -> None:
    base = derive_workspace(organization_name)
    assert check_workspace(base) == base
    candidates = list(zip(range(14), workspace_candidates(base), strict=False))
    names = [name for _, name in candidates]
    assert all(_valid(name) for name in names), names
    assert len(set(names)) == len(names)


def test_candidates_are_the_name_then_numbered_then_random_suffixes() -> None:
    tokens = iter(["k3x9", "zz01"])
    found = workspace_candidates("acme", token=lambda n: next(tokens))
    assert [next(found) for _ in range(11)] == [
        "acme",
        *(f"acme-{n}" for n in range(2, 10)),
        "acme-k3x9",
        "acme-zz01",
    ]


def test_suffixes_keep_a_63_character_name_within_63() -> None:
    found = workspace_candidates("a" * 60 + "-bc", token=lambda n: "q" * n)
    assert next(found) == "a" * 60 + "-bc"
    assert next(found) == "a" * 60 + "-2"  # cut to 61, then the dangling hyphen dropped
    for _ in range(7):
        next(found)
    assert next(found) == "a" * 58 + "-qqqq"


@pytest.mark.parametrize(("given_name", "stored"), [("acme", "acme"), ("  Acme-Corp ", "acme-corp"), ("a1b", "a1b")])
def test_a_valid_workspace_is_stored_lowercase(given_name: str, stored: str) -> None:
    assert check_workspace(given_name) == stored


@pytest.mark.parametrize(
    "bad",
    ["", "ab", "1acme", "-acme", "acme-", "ac--me", "acme_corp", "acme corp", "ácme", "acme.io", "a" * 64, "ac\nme"],
)
def test_an_invalid_workspace_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_workspace(bad, field="organization")
    assert raised.value.field == "organization"
    assert raised.value.message.startswith("organization: must be 3 to 63 lowercase letters")


@pytest.fixture
def scratch_database(database_url: str) -> Iterator[str]:
    """An empty database of this test (the roles exist: the run's database made them)."""
    admin = sa.create_engine(sqlalchemy_url(database_url), isolation_level="AUTOCOMMIT")
    name = f"wp_migrate_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = make_url(sqlalchemy_url(database_url)).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def test_the_migration_names_existing_organizations_oldest_first(scratch_database: str) -> None:
    engine = sa.create_engine(scratch_database)
    try:
        with engine.connect() as conn:
            ensure_roles(conn)
            conn.commit()
        command.upgrade(alembic_config("auth", scratch_database), "0001")
        before = [
            ("Acme", "2024-01-01"),
            ("ACME", "2024-01-02"),
            ("Café Zürich", "2024-01-03"),
            ("acme!", "2024-01-04"),
            ("株式会社", "2024-01-05"),
            ("3M", "2024-01-06"),
        ]
        ids = [str(uuid.uuid4()) for _ in before]
        with engine.begin() as conn:
            for org_id, (name, created) in zip(ids, before, strict=True):
                conn.execute(
                    sa.text("insert into auth.organizations (id, name, created_at) values (:id, :name, :at)"),
                    {"id": org_id, "name": name, "at": created},
                )
        command.upgrade(alembic_config("auth", scratch_database), "head")
        with engine.connect() as conn:
            named = dict(conn.execute(sa.text("select id::text, workspace from auth.organizations")).all())
        assert [named[i] for i in ids] == ["acme", "acme-2", "cafe-zurich", "acme-3", "org", "org-3m"]

        # From now on the database itself keeps names unique and well formed (lowercase, so
        # unique in any letter case; the unique index is on lower(workspace) besides).
        with pytest.raises(sa.exc.IntegrityError, match="organizations_workspace_key"), engine.begin() as conn:
            conn.execute(
                sa.text("insert into auth.organizations (id, name, workspace) values (:id, 'Other', 'acme')"),
                {"id": str(uuid.uuid4())},
            )
        for bad in ("Acme-Corp", "ab", "acme-", "ac--me", "9acme"):
            with pytest.raises(sa.exc.IntegrityError, match="organizations_workspace_form"), engine.begin() as conn:
                conn.execute(
                    sa.text("insert into auth.organizations (id, name, workspace) values (:id, 'Other', :ws)"),
                    {"id": str(uuid.uuid4()), "ws": bad},
                )
        # A row inserted without one (not by the service, which always names it) still gets one.
        with engine.begin() as conn:
            unnamed = conn.execute(
                sa.text("insert into auth.organizations (id, name) values (:id, 'Raw') returning workspace"),
                {"id": str(uuid.uuid4())},
            ).scalar_one()
        assert re.fullmatch(r"org-[0-9a-f]{12}", unnamed), unnamed
    finally:
        engine.dispose()


def test_the_migration_goes_back_down(scratch_database: str) -> None:
    engine = sa.create_engine(scratch_database)
    try:
        with engine.connect() as conn:
            ensure_roles(conn)
            conn.commit()
        command.upgrade(alembic_config("auth", scratch_database), "head")
        command.downgrade(alembic_config("auth", scratch_database), "0001")
        with engine.connect() as conn:
            columns = conn.execute(
                sa.text(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'auth' and table_name = 'organizations'"
                )
            ).scalars()
            assert "workspace" not in set(columns)
    finally:
        engine.dispose()

"""sql/schema.sql: the SQL Server DDL of all migrations, generated offline.

No test here touches a database (none requests ``db``): the DDL is rendered by
mssql-django against an in-memory alias that must never connect.

mssql-django and pyodbc come from requirements-mssql.txt (pyodbc also needs the
Debian package unixodbc). Without them these tests are skipped on a developer
machine and fail under CI (CI=true), so a stale schema cannot slip through.
"""

from __future__ import annotations

import os
import re

import pytest


def _require_mssql():
    try:
        import mssql.base  # noqa: F401  (imports pyodbc, which needs libodbc.so.2)
    except Exception as exc:  # ImportError, or ImproperlyConfigured wrapping it
        message = (
            "SQL Server DDL needs mssql-django + pyodbc: pip install -r requirements-mssql.txt "
            "and apt-get install unixodbc (%s: %s)" % (type(exc).__name__, exc)
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def generated():
    """(schema text, offline wrapper) for the current migrations."""
    _require_mssql()
    from projects import sqlserver

    with sqlserver.offline_connection() as connection:
        collected = sqlserver.collect_migration_sql(connection)
        text = sqlserver.render_schema_sql(collected, connection)
    return text, connection


def test_schema_sql_is_up_to_date(generated):
    from projects import sqlserver

    text, _ = generated
    path = sqlserver.default_schema_path()
    if not path.exists():
        pytest.fail("sql/schema.sql is missing: run `python manage.py sqlserver_ddl`", pytrace=False)
    current = path.read_text(encoding="utf-8")
    if current != text:
        pytest.fail(
            "%s\n%s" % (sqlserver.STALE_MESSAGE, sqlserver.schema_diff(current, text)),
            pytrace=False,
        )


def _create_table(text, table):
    match = re.search(r"^CREATE TABLE \[%s\] \((.*)\);$" % re.escape(table), text, re.M)
    assert match, "no CREATE TABLE [%s] in the generated DDL" % table
    return match.group(1)


def test_ddl_uses_sql_server_types(generated, settings):
    text, _ = generated
    body = _create_table(text, "auth_user")
    assert "[id] int NOT NULL PRIMARY KEY IDENTITY (1, 1)" in body
    assert "[username] nvarchar(30) NOT NULL UNIQUE" in body  # widened later by auth.0008
    assert "[is_superuser] bit NOT NULL" in body
    datetime_type = "datetimeoffset" if settings.USE_TZ else "datetime2"
    assert "[date_joined] %s NOT NULL" % datetime_type in body
    # auth.0008 drops the server-named UNIQUE constraint by looking its name up.
    assert "ALTER TABLE [auth_user] ALTER COLUMN [username] nvarchar(150) NOT NULL;" in text
    assert "FROM sys.key_constraints AS kc" in text


def test_platform_tables_are_in_the_ddl(generated):
    from django.apps import apps

    text, _ = generated
    try:
        organization = apps.get_model("projects", "Organization")
    except LookupError:
        pytest.skip("projects.Organization does not exist yet")
    body = _create_table(text, organization._meta.db_table)
    assert "[id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1)" in body
    assert "nvarchar(" in body


def test_no_connection_was_opened(generated, monkeypatch):
    from mssql import base as mssql_base

    from projects import sqlserver

    _, connection = generated
    assert connection.connection is None
    assert connection.vendor == "microsoft"
    assert connection.sql_server_version == sqlserver.SQLSERVER_VERSION == 2022

    # Generating again with the driver's connect() booby-trapped must work too.
    def refuse(*args, **kwargs):
        raise AssertionError("sqlserver_ddl tried to connect to SQL Server")

    monkeypatch.setattr(mssql_base.Database, "connect", refuse)
    with sqlserver.offline_connection() as again:
        sqlserver.collect_migration_sql(again)
        assert again.connection is None
        with pytest.raises(sqlserver.OfflineConnectionError):
            again.ensure_connection()


def test_output_is_deterministic(generated):
    from projects import sqlserver

    text, _ = generated
    assert sqlserver.generate_schema_sql() == text
    assert "__mssql_sysname_" not in re.sub(r"N'[^']*'", "", text)  # placeholders only in literals


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "mssql://u:p@db:1433/hartonomous?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes",
            {"driver": "ODBC Driver 18 for SQL Server", "extra_params": "TrustServerCertificate=yes"},
        ),
        ("mssql://u:p@db/hartonomous", {}),
        (
            "mssql://u:p@db/h?Encrypt=yes&query_timeout=30&host_is_server=true&extra_params=MultiSubnetFailover%3Dyes",
            {
                "query_timeout": 30,
                "host_is_server": True,
                "extra_params": "Encrypt=yes;MultiSubnetFailover=yes",
            },
        ),
        ("mssql://u:p@db/h?Authentication=Active%3BDirectory", {"extra_params": "Authentication={Active;Directory}"}),
    ],
)
def test_mssql_options_from_url(url, expected):
    from projects.sqlserver import mssql_options_from_url

    assert mssql_options_from_url(url) == expected


def test_mssql_database_from_url():
    pytest.importorskip("dj_database_url")
    from projects.sqlserver import is_mssql_url, mssql_database_from_url

    url = "mssql://sa:p%40ss@db.example:1433/hartonomous?TrustServerCertificate=yes"
    assert is_mssql_url(url) and not is_mssql_url("postgres://u@h/db")
    config = mssql_database_from_url(url, conn_max_age=60)
    assert config["ENGINE"] == "mssql"
    assert (config["USER"], config["PASSWORD"]) == ("sa", "p@ss")
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.example", "1433", "hartonomous")
    assert config["CONN_MAX_AGE"] == 60
    assert config["OPTIONS"] == {"extra_params": "TrustServerCertificate=yes"}

"""SQL Server: sql/schema.sql generated from the current models offline, and DATABASE_URL → OPTIONS.

No test here touches a database: the DDL is rendered by mssql-django's schema editor against an
alias that refuses to connect. mssql-django and pyodbc come from requirements-mssql.txt (pyodbc
also needs the Debian package unixodbc); without them the DDL tests are skipped on a developer
machine and fail under CI (CI=true), so a stale schema cannot slip through.
"""

from __future__ import annotations

import os
import re

import pytest

from projects import sqlserver


def _require_mssql() -> None:
    try:
        import mssql.base  # noqa: F401  (imports pyodbc, which needs libodbc.so.2)
    except Exception as exc:  # ImportError, or ImproperlyConfigured wrapping it
        message = (
            "SQL Server DDL needs mssql-django + pyodbc: pip install -r requirements-mssql.txt "
            f"and apt-get install unixodbc ({type(exc).__name__}: {exc})"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def generated() -> str:
    _require_mssql()
    return sqlserver.generate_schema_sql()


def _create_table(text: str, table: str) -> str:
    match = re.search(rf"^CREATE TABLE \[{re.escape(table)}\] \((.*)\);$", text, re.M)
    assert match, f"no CREATE TABLE [{table}] in the generated DDL"
    return match.group(1)


def test_schema_sql_is_up_to_date(generated):
    path = sqlserver.default_schema_path()
    if not path.exists():
        pytest.fail(f"sql/schema.sql is missing: run `{sqlserver.REGENERATE_COMMAND}`", pytrace=False)
    current = path.read_text(encoding="utf-8")
    if current != generated:
        pytest.fail(f"{sqlserver.STALE_MESSAGE}\n{sqlserver.schema_diff(current, generated)}", pytrace=False)


def test_ddl_is_the_final_state_in_sql_server_types(generated, settings):
    body = _create_table(generated, "auth_user")
    assert "[id] int NOT NULL PRIMARY KEY IDENTITY (1, 1)" in body
    # The width auth.0008 gave it, directly: the file is the end state, not the migration history.
    assert "[username] nvarchar(150) NOT NULL UNIQUE" in body
    assert "[is_superuser] bit NOT NULL" in body
    assert f"[date_joined] {'datetimeoffset' if settings.USE_TZ else 'datetime2'} NOT NULL" in body
    assert "ALTER COLUMN" not in generated


def test_every_table_of_every_app_is_there_once(generated):
    from django.apps import apps

    for model in apps.get_models(include_auto_created=True):
        if model._meta.managed and not model._meta.proxy:
            assert len(re.findall(rf"^CREATE TABLE \[{re.escape(model._meta.db_table)}\] ", generated, re.M)) == 1
    body = _create_table(generated, "projects_organization")
    assert "[id] bigint NOT NULL PRIMARY KEY IDENTITY (1, 1)" in body
    # Foreign keys and indexes come after the tables, so the script runs top to bottom.
    first_fk = generated.index("FOREIGN KEY")
    assert first_fk > generated.rindex("CREATE TABLE")


def test_no_connection_is_opened(generated, monkeypatch):
    from mssql import base as mssql_base

    def refuse(*args, **kwargs):
        raise AssertionError("sqlserver_ddl tried to connect to SQL Server")

    monkeypatch.setattr(mssql_base.Database, "connect", refuse)
    with sqlserver.offline_connection() as connection:
        assert connection.vendor == "microsoft"
        assert connection.sql_server_version == sqlserver.SQLSERVER_VERSION == 2022
        sqlserver.collect_schema_sql(connection)
        assert connection.connection is None
        with pytest.raises(sqlserver.OfflineConnectionError):
            connection.get_new_connection(connection.get_connection_params())


def test_output_is_deterministic(generated):
    assert sqlserver.generate_schema_sql() == generated


def test_check_reports_a_stale_file(generated, tmp_path):
    path = tmp_path / "schema.sql"
    assert "does not exist" in sqlserver.check_schema_file(path, expected=generated)
    path.write_text(generated.replace("nvarchar(150)", "nvarchar(30)", 1), encoding="utf-8")
    problem = sqlserver.check_schema_file(path, expected=generated)
    assert "is stale" in problem and "+" in problem and "nvarchar(150)" in problem
    path.write_text(generated, encoding="utf-8")
    assert sqlserver.check_schema_file(path, expected=generated) is None


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
    assert sqlserver.mssql_options_from_url(url) == expected


@pytest.mark.parametrize("query", ["host_is_server=maybe", "query_timeout=soon"])
def test_bad_option_values_are_named(query):
    with pytest.raises(ValueError, match=query.split("=")[0]):
        sqlserver.mssql_options_from_url(f"mssql://u:p@db/h?{query}")


def test_mssql_database_from_url():
    pytest.importorskip("dj_database_url")
    url = "mssql://sa:p%40ss@db.example:1433/hartonomous?TrustServerCertificate=yes"
    assert sqlserver.is_mssql_url(url) and not sqlserver.is_mssql_url("postgres://u@h/db")
    config = sqlserver.mssql_database_from_url(url, conn_max_age=60)
    assert config["ENGINE"] == "mssql"
    assert (config["USER"], config["PASSWORD"]) == ("sa", "p@ss")
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.example", "1433", "hartonomous")
    assert config["CONN_MAX_AGE"] == 60
    assert config["OPTIONS"] == {"extra_params": "TrustServerCertificate=yes"}

"""SQL Server support: a ``mssql://`` ``DATABASE_URL`` as mssql-django settings, and ``sql/schema.sql``.

* :func:`mssql_options_from_url` and :func:`mssql_database_from_url` turn the URL into the
  ``DATABASES`` entry mssql-django expects. The first uses the standard library only, so
  ``settings.py`` imports it without loading Django's database layer, mssql-django or pyodbc.
* :func:`generate_schema_sql` renders the SQL Server DDL of the schema an empty database gets —
  every table of the current model state (the state the migrations build), its indexes and foreign
  keys — with mssql-django's own schema editor in ``collect_sql`` mode, the way ``sqlmigrate``
  renders a migration. Creating tables never asks the server anything, so no connection is made:
  the wrapper pins the server version to SQL Server 2022 and refuses to connect.

``sql/schema.sql`` is for review (DBAs, pull-request diffs); databases are provisioned with
``manage.py migrate``. The output is deterministic: the same models give the same bytes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

#: mssql-django expresses the server version as a release year.
SQLSERVER_VERSION = 2022
#: Alias under which the offline wrapper is registered while generating.
OFFLINE_ALIAS = "sqlserver_ddl"
#: Location of the generated DDL, relative to the project root.
DEFAULT_SCHEMA_PATH = Path("sql") / "schema.sql"
REGENERATE_COMMAND = "python manage.py sqlserver_ddl"
STALE_MESSAGE = f"sql/schema.sql is stale: run `{REGENERATE_COMMAND}`"

# --- DATABASE_URL -> DATABASES["default"] ------------------------------------------------------

#: URL schemes that mean "SQL Server through mssql-django". dj-database-url maps ``mssql://`` to the
#: long-dead ``sql_server.pyodbc`` engine, so the engine is set here whichever scheme is used.
MSSQL_URL_SCHEMES = ("mssql", "mssqlms", "sqlserver")

#: mssql-django ``OPTIONS`` keys (``mssql/base.py``) and the type of each. Every other query
#: parameter is an ODBC connection-string keyword and goes into ``extra_params``.
_OPTION_TYPES: dict[str, type] = {
    "driver": str,
    "dsn": str,
    "extra_params": str,
    "host_is_server": bool,
    "unicode_results": bool,
    "return_rows_bulk_insert": bool,
    "driver_needs_utf8": bool,
    "driver_charset": str,
    "collation": str,
    "python_driver": str,
    "connection_timeout": int,
    "connection_retries": int,
    "connection_retry_backoff_time": int,
    "query_timeout": int,
    "connection_recovery_interval_msec": int,
    "datefirst": int,
    "isolation_level": str,  # passed verbatim ("READ COMMITTED SNAPSHOT"...)
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def is_mssql_url(url: str | None) -> bool:
    """True when ``url`` selects SQL Server (``mssql://``, ``mssqlms://``, ``sqlserver://``)."""
    return bool(url) and urlsplit(url).scheme.lower() in MSSQL_URL_SCHEMES


def _option_value(key: str, value: str) -> str | int | bool:
    kind = _OPTION_TYPES[key]
    if kind is bool:
        lowered = value.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(f"DATABASE_URL option {key}={value!r} is not a boolean")
        return lowered in _TRUE
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"DATABASE_URL option {key}={value!r} is not an integer") from None
    return value


def _odbc_value(value: str) -> str:
    """An ODBC connection-string value, in braces when it needs them."""
    if (value and (value[0] == "{" or any(ch in value for ch in ";="))) or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def mssql_options_from_url(url: str) -> dict[str, Any]:
    """mssql-django ``OPTIONS`` for a SQL Server ``DATABASE_URL``.

    Query parameters that are mssql-django options are copied with their type; every other one
    is an ODBC keyword (``TrustServerCertificate``, ``Encrypt``, ``Authentication``...) and is
    appended, in URL order, to ``extra_params`` (mssql-django ignores unknown ``OPTIONS`` keys, so
    it would otherwise be lost). ``driver`` is left out when the URL names none: mssql-django then
    uses its default, ODBC Driver 18 (or 17).

    >>> mssql_options_from_url("mssql://u:p@db/h?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes")
    {'driver': 'ODBC Driver 18 for SQL Server', 'extra_params': 'Encrypt=yes'}
    """
    options: dict[str, Any] = {}
    extra: list[str] = []
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        option = key.lower()
        if option == "extra_params":
            extra.append(value.strip().strip(";"))
        elif option in _OPTION_TYPES:
            options[option] = _option_value(option, value)
        else:
            extra.append(f"{key}={_odbc_value(value)}")
    if any(extra):
        options["extra_params"] = ";".join(part for part in extra if part)
    return options


def mssql_database_from_url(url: str, **parse_kwargs: Any) -> dict[str, Any]:
    """The whole ``DATABASES`` entry for a SQL Server URL (through dj-database-url).

    ``parse_kwargs`` go to ``dj_database_url.parse`` (``conn_max_age``, ``conn_health_checks``...).
    """
    import dj_database_url

    split = urlsplit(url)
    # dj-database-url only has to read user, password, host and port; "mssqlms" is a scheme it knows.
    config = dj_database_url.parse(split._replace(scheme="mssqlms", query="").geturl(), **parse_kwargs)
    config["ENGINE"] = "mssql"
    config["NAME"] = unquote(split.path.lstrip("/"))
    config["OPTIONS"] = mssql_options_from_url(url)
    return config


# --- sql/schema.sql -----------------------------------------------------------------------------


class OfflineConnectionError(RuntimeError):
    """Something tried to connect while the DDL is generated offline."""


def _offline_wrapper_class() -> type[BaseDatabaseWrapper]:
    """mssql-django's wrapper with the server version pinned and connecting refused.

    Built on call: importing this module must not need mssql-django or pyodbc.
    """
    from mssql.base import DatabaseWrapper

    class OfflineDatabaseWrapper(DatabaseWrapper):
        sql_server_version = SQLSERVER_VERSION  # instead of asking the server
        to_azure_sql_db = False

        def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
            raise OfflineConnectionError(
                f"sqlserver_ddl renders DDL offline and must not connect to SQL Server (alias {self.alias!r})"
            )

    return OfflineDatabaseWrapper


@contextmanager
def offline_connection(alias: str = OFFLINE_ALIAS) -> Iterator[BaseDatabaseWrapper]:
    """An offline SQL Server wrapper, registered as ``connections[alias]`` while in use
    (``Options.can_migrate`` and routers look the alias up there)."""
    from django.db import connections
    from django.db.utils import ConnectionHandler

    if alias in connections.settings:
        raise ValueError(f"alias {alias!r} is a configured database; pick another one")
    database = {
        "ENGINE": "mssql",
        "NAME": "hartonomous",
        "HOST": "sqlserver.invalid",
        "USER": "offline",
        "OPTIONS": {"driver": "ODBC Driver 18 for SQL Server"},
    }
    settings_dict = ConnectionHandler({"default": database}).settings["default"]  # fills the defaults
    wrapper = _offline_wrapper_class()(settings_dict, alias)
    connections[alias] = wrapper
    try:
        yield wrapper
    finally:
        del connections[alias]


def schema_models() -> list[type]:
    """The concrete, managed models of the state the migrations build, in app and model order."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    state_apps = loader.project_state().apps
    return sorted(
        (m for m in state_apps.get_models() if m._meta.managed and not m._meta.proxy),
        key=lambda m: m._meta.db_table,
    )


def _statement(text: str) -> str:
    """One statement, its continuation lines unindented (mssql-django's templates are indented)."""
    lines = [line.rstrip() for line in str(text).strip().splitlines()]
    rest = [line for line in lines[1:] if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in rest), default=0)
    return "\n".join([lines[0].strip()] + [line[indent:] for line in lines[1:]])


def collect_schema_sql(connection: BaseDatabaseWrapper) -> tuple[list[str], list[str]]:
    """(``CREATE TABLE`` statements in table order, then the indexes and foreign keys, sorted)."""
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        for model in schema_models():
            editor.create_model(model)  # also the table of each auto-created many-to-many
        tables = len(editor.collected_sql)
    statements = [_statement(sql) for sql in editor.collected_sql]
    # mssql-django keeps its deferred statements in a set; sort them for a stable file.
    return statements[:tables], sorted(set(statements[tables:]))


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def render_schema_sql(tables: list[str], deferred: list[str]) -> str:
    """The text of ``sql/schema.sql``."""
    header = f"""\
-- =============================================================================
-- GENERATED FILE - DO NOT EDIT. Regenerate: {REGENERATE_COMMAND}
--
-- The SQL Server {SQLSERVER_VERSION} schema an empty database gets from `manage.py migrate`:
-- every table of the current models, then their indexes and foreign keys.
-- Rendered offline by mssql-django {_package_version("mssql-django")} (Django {_package_version("Django")}).
-- For review and diffs; provision databases with `manage.py migrate`, which
-- also records the migrations and runs the data migrations.
-- Run with:  sqlcmd -b -I -d <database> -i sql/schema.sql
-- =============================================================================
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET XACT_ABORT ON;
GO
BEGIN TRANSACTION;
GO
"""
    body = [f"{sql.rstrip(';')};\nGO" for sql in tables + deferred]
    return header + "\n".join(body) + "\nCOMMIT;\nGO\n"


def generate_schema_sql(alias: str = OFFLINE_ALIAS) -> str:
    """The full, deterministic text of ``sql/schema.sql``."""
    with offline_connection(alias) as connection:
        return render_schema_sql(*collect_schema_sql(connection))


def default_schema_path() -> Path:
    """``<BASE_DIR>/sql/schema.sql``."""
    from django.conf import settings

    return Path(settings.BASE_DIR) / DEFAULT_SCHEMA_PATH


def schema_diff(current: str, expected: str, label: str = "sql/schema.sql", limit: int = 60) -> str:
    """The first ``limit`` lines of a unified diff, for error messages."""
    lines = list(
        difflib.unified_diff(
            current.splitlines(), expected.splitlines(), f"{label} (on disk)", f"{label} (generated)", lineterm=""
        )
    )
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join(lines)


def check_schema_file(path: Path | None = None, expected: str | None = None) -> str | None:
    """None when ``path`` (default ``sql/schema.sql``) holds the generated DDL, else what to do."""
    path = path or default_schema_path()
    expected = generate_schema_sql() if expected is None else expected
    command = REGENERATE_COMMAND if path == default_schema_path() else f"{REGENERATE_COMMAND} --output {path}"
    if not path.exists():
        return f"{path} does not exist: run `{command}`"
    current = path.read_text(encoding="utf-8")
    if current == expected:
        return None
    return f"{path} is stale: run `{command}`\n{schema_diff(current, expected, str(path))}"

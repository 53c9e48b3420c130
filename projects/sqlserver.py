"""SQL Server support for Hartonomous.

Two independent pieces live here:

* :func:`mssql_options_from_url` / :func:`mssql_database_from_url` turn a
  ``mssql://`` ``DATABASE_URL`` into the ``DATABASES`` entry that
  mssql-django expects.  They are pure functions (standard library only), so
  ``settings.py`` may import them without pulling in Django's database layer,
  mssql-django or pyodbc.

* :func:`generate_schema_sql` renders the SQL Server DDL of every migration of
  every installed app -- the plan ``manage.py migrate`` applies to an empty
  database -- **without any database connection**.  It builds an mssql-django
  ``DatabaseWrapper`` for an in-memory alias, pins the server version to SQL
  Server 2022 (major version 16) instead of asking a server, and runs every
  migration through a ``collect_sql=True`` schema editor, the way
  ``sqlmigrate`` does for a single migration.

  mssql-django looks at the live catalogue for some operations (``AlterField``,
  ``RemoveField``, dropping a column default...).  Offline, those questions are
  answered by :class:`SimulatedCatalog`, which tracks the tables, columns,
  constraints and indexes created by the statements generated so far.
  Constraints that SQL Server names itself (an inline ``PRIMARY KEY`` or
  ``UNIQUE``, a column ``DEFAULT`` or unnamed ``CHECK``) cannot be known in
  advance: statements that drop them are emitted as dynamic SQL that looks the
  name up in ``sys.*`` when the script runs.  Any other query that would need
  a server raises :class:`OfflineConnectionError` instead of connecting.

The output is deterministic: the same migrations give a byte-identical file.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import re
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "DEFAULT_SCHEMA_PATH",
    "OFFLINE_ALIAS",
    "REGENERATE_COMMAND",
    "SQLSERVER_MAJOR_VERSION",
    "SQLSERVER_VERSION",
    "OfflineConnectionError",
    "SimulatedCatalog",
    "build_offline_connection",
    "check_schema_file",
    "collect_migration_sql",
    "default_schema_path",
    "generate_schema_sql",
    "is_mssql_url",
    "mssql_database_from_url",
    "migration_plan",
    "mssql_options_from_url",
    "offline_connection",
    "render_schema_sql",
    "schema_diff",
]

#: mssql-django expresses the server version as a release year.
SQLSERVER_VERSION = 2022
#: ``SERVERPROPERTY('ProductVersion')`` major number of SQL Server 2022.
SQLSERVER_MAJOR_VERSION = 16
#: Alias under which the offline wrapper is registered while generating.
OFFLINE_ALIAS = "sqlserver_ddl"
#: Location of the generated DDL, relative to the project root.
DEFAULT_SCHEMA_PATH = Path("sql") / "schema.sql"
REGENERATE_COMMAND = "python manage.py sqlserver_ddl"
STALE_MESSAGE = "sql/schema.sql is stale: run `%s`" % REGENERATE_COMMAND


# ---------------------------------------------------------------------------
# DATABASE_URL -> DATABASES["default"] for mssql-django
# ---------------------------------------------------------------------------

#: URL schemes that mean "SQL Server through mssql-django".  dj-database-url
#: maps ``mssql://`` to the long-dead ``sql_server.pyodbc`` engine and only
#: ``mssqlms://`` to ``mssql``, so the engine must be overridden either way.
MSSQL_URL_SCHEMES = ("mssql", "mssqlms", "sqlserver")

#: mssql-django ``OPTIONS`` keys (see ``mssql/base.py``) and how to coerce the
#: string that comes from a query string.  Every other query parameter is an
#: ODBC connection-string keyword and goes into ``extra_params``.
_MSSQL_OPTION_TYPES = {
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
    # isolation_level is passed verbatim ("READ COMMITTED SNAPSHOT"...).
    "isolation_level": str,
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def is_mssql_url(url):
    """True when ``url`` selects SQL Server (``mssql://``, ``mssqlms://``...)."""
    return bool(url) and urlsplit(url).scheme.lower() in MSSQL_URL_SCHEMES


def _coerce_option(key, value):
    kind = _MSSQL_OPTION_TYPES[key]
    if kind is bool:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("DATABASE_URL option %s=%r is not a boolean" % (key, value))
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ValueError("DATABASE_URL option %s=%r is not an integer" % (key, value)) from None
    return value


def _odbc_value(value):
    """Quote an ODBC connection-string value when it needs it."""
    if value and (value[0] == "{" or any(ch in value for ch in ";=")) or value != value.strip():
        return "{%s}" % value.replace("}", "}}")
    return value


def mssql_options_from_url(url):
    """Return mssql-django ``OPTIONS`` for a SQL Server ``DATABASE_URL``.

    Query parameters that are mssql-django options (``driver``, ``dsn``,
    ``host_is_server``, ``connection_timeout``, ``query_timeout``,
    ``collation``, ``isolation_level``, ``extra_params``...) are copied with
    the right type.  Everything else is an ODBC connection-string keyword
    (``TrustServerCertificate``, ``Encrypt``, ``Authentication``,
    ``MultiSubnetFailover``, ``ApplicationIntent``...) and is appended, in URL
    order, to ``extra_params`` -- mssql-django ignores unknown ``OPTIONS``
    keys, so ``?TrustServerCertificate=yes`` would otherwise be lost.

    ``driver`` is left out when the URL does not name one, so mssql-django
    keeps its default ("ODBC Driver 18 for SQL Server", falling back to 17).

    >>> mssql_options_from_url(
    ...     "mssql://u:p@db:1433/hartonomous"
    ...     "?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes"
    ... )
    {'driver': 'ODBC Driver 18 for SQL Server', 'extra_params': 'TrustServerCertificate=yes'}
    """
    query = urlsplit(url).query
    options = {}
    extra = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        option = key.lower()
        if option in _MSSQL_OPTION_TYPES:
            if option == "extra_params":
                extra.append(value.strip().strip(";"))
            else:
                options[option] = _coerce_option(option, value)
        else:
            extra.append("%s=%s" % (key, _odbc_value(value)))
    extra = [part for part in extra if part]
    if extra:
        options["extra_params"] = ";".join(extra)
    return options


def mssql_database_from_url(url, **parse_kwargs):
    """Full ``DATABASES`` entry for a SQL Server URL (uses dj-database-url).

    ``parse_kwargs`` are passed to ``dj_database_url.parse`` (``conn_max_age``,
    ``conn_health_checks``...).  ``ENGINE`` is forced to ``"mssql"`` and
    ``OPTIONS`` comes from :func:`mssql_options_from_url`.
    """
    import dj_database_url

    split = urlsplit(url)
    # dj-database-url does not know every scheme we accept; it only has to
    # parse user/password/host/port/name, which "mssqlms" gives it.
    parsable = split._replace(scheme="mssqlms", query="").geturl()
    config = dj_database_url.parse(parsable, **parse_kwargs)
    config["ENGINE"] = "mssql"
    config["NAME"] = unquote(split.path.lstrip("/"))
    config["OPTIONS"] = mssql_options_from_url(url)
    return config


# ---------------------------------------------------------------------------
# Simulated catalogue
# ---------------------------------------------------------------------------

_IDENT = r"(?:\[(?:[^\]]|\]\])+\]|[A-Za-z_@#][\w@#$]*)"
_PLACEHOLDER_RE = re.compile(r"__mssql_sysname_(\d+)__")


def _unquote(ident):
    ident = ident.strip()
    if ident.startswith("[") and ident.endswith("]"):
        return ident[1:-1].replace("]]", "]")
    return ident


def _quote(name):
    return "[%s]" % name.replace("]", "]]")


def _literal(text):
    """T-SQL N'' literal."""
    return "N'%s'" % text.replace("'", "''")


def _mask(sql):
    """Same-length copy of ``sql`` with string literals and bracketed
    identifiers blanked out, so keyword searches cannot match inside them."""
    out = list(sql)
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "'" and j + 1 < n and sql[j + 1] == "'":
                    j += 2
                    continue
                if sql[j] == "'":
                    break
                j += 1
            for k in range(i + 1, min(j, n)):
                out[k] = "x"
            i = j + 1
        elif ch == "[":
            j = i + 1
            while j < n:
                if sql[j] == "]" and j + 1 < n and sql[j + 1] == "]":
                    j += 2
                    continue
                if sql[j] == "]":
                    break
                j += 1
            for k in range(i + 1, min(j, n)):
                out[k] = "x"
            i = j + 1
        else:
            i += 1
    return "".join(out)


def _split_top_level(sql, sep):
    """Split on ``sep`` outside parentheses, brackets and string literals."""
    masked = _mask(sql)
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(masked):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(sql[start:i])
            start = i + 1
    parts.append(sql[start:])
    return [part.strip() for part in parts if part.strip()]


def _closing_paren(sql, open_index):
    masked = _mask(sql)
    depth = 0
    for i in range(open_index, len(masked)):
        if masked[i] == "(":
            depth += 1
        elif masked[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(sql) - 1


def _index_columns(text):
    """Column names (and orders) of an index / key column list."""
    columns, orders = [], []
    for item in _split_top_level(text, ","):
        match = re.fullmatch(r"(%s)(?:\s+(ASC|DESC))?" % _IDENT, item, re.I)
        if not match:  # expression: not a plain column
            continue
        columns.append(_unquote(match.group(1)))
        orders.append((match.group(2) or "ASC").upper())
    return columns, orders


def _constraint_info(columns, **flags):
    info = {
        "columns": list(columns),
        "primary_key": False,
        "unique": False,
        "unique_constraint": False,
        "foreign_key": None,
        "check": False,
        "index": False,
        "default": False,
    }
    info.update(flags)
    return info


class SimulatedCatalog:
    """The tables, columns, constraints and indexes that the DDL generated so
    far would have created, in the shape of mssql-django's
    ``introspection.get_constraints()``.

    Constraints named by SQL Server itself get a placeholder name
    (``__mssql_sysname_N__``); :meth:`resolve` turns a statement that uses one
    into dynamic SQL that finds the real name in ``sys.*`` at run time.
    """

    def __init__(self):
        self.tables = {}  # table -> {"columns": [...], "constraints": {name: info}}
        self.filters = {}  # (table, index name) -> filter_definition
        self._placeholders = 0

    # -- queries ----------------------------------------------------------

    def get_constraints(self, table):
        entry = self.tables.get(table)
        if entry is None:
            return {}
        return copy.deepcopy(entry["constraints"])

    def find(self, name):
        """``(table, info)`` of the constraint or index called ``name``."""
        for table, entry in self.tables.items():
            if name in entry["constraints"]:
                return table, entry["constraints"][name]
        return None, None

    def default_constraint(self, table, column):
        entry = self.tables.get(table)
        if entry is None:
            return []
        return [name for name, info in entry["constraints"].items() if info["default"] and info["columns"] == [column]]

    # -- bookkeeping ------------------------------------------------------

    def _placeholder(self):
        self._placeholders += 1
        return "__mssql_sysname_%d__" % self._placeholders

    def _table(self, table):
        return self.tables.setdefault(table, {"columns": [], "constraints": {}})

    def _add(self, table, name, info):
        self._table(table)["constraints"][name or self._placeholder()] = info

    def _add_column(self, table, column, definition):
        entry = self._table(table)
        if column not in entry["columns"]:
            entry["columns"].append(column)
        masked = _mask(definition)
        for match in re.finditer(
            r"(?:\bCONSTRAINT\s+(%s)\s+)?\b(PRIMARY\s+KEY|UNIQUE|CHECK|DEFAULT|REFERENCES)\b" % _IDENT,
            masked,
            re.I,
        ):
            name = _unquote(definition[match.start(1) : match.end(1)]) if match.group(1) else None
            kind = re.sub(r"\s+", " ", match.group(2).upper())
            if kind == "PRIMARY KEY":
                info = _constraint_info([column], primary_key=True, unique=True)
            elif kind == "UNIQUE":
                info = _constraint_info([column], unique=True, unique_constraint=True)
            elif kind == "CHECK":
                info = _constraint_info([column], check=True)
            elif kind == "DEFAULT":
                info = _constraint_info([column], default=True)
            else:  # inline REFERENCES [table] ([column])
                ref = re.match(r"\s*(%s)\s*\(\s*(%s)\s*\)" % (_IDENT, _IDENT), definition[match.end() :])
                if not ref:
                    continue
                info = _constraint_info([column], foreign_key=(_unquote(ref.group(1)), _unquote(ref.group(2))))
            self._add(table, name, info)

    def _add_table_constraint(self, table, name, body):
        """``body`` follows ``CONSTRAINT name`` (or is a bare table constraint)."""
        masked = _mask(body)
        match = re.match(r"\s*(PRIMARY\s+KEY|UNIQUE|CHECK|FOREIGN\s+KEY)\b", masked, re.I)
        if not match:
            return
        kind = re.sub(r"\s+", " ", match.group(1).upper())
        open_index = body.find("(", match.end())
        if open_index < 0:
            return
        close = _closing_paren(body, open_index)
        inside = body[open_index + 1 : close]
        if kind == "PRIMARY KEY":
            columns, _ = _index_columns(inside)
            self._add(table, name, _constraint_info(columns, primary_key=True, unique=True))
        elif kind == "UNIQUE":
            columns, _ = _index_columns(inside)
            self._add(table, name, _constraint_info(columns, unique=True, unique_constraint=True))
        elif kind == "CHECK":
            known = self._table(table)["columns"]
            referenced = []
            # Bracketed or "double-quoted" identifiers (JSONField checks use
            # ISJSON("col")) that name a column of the table.
            for ident in re.findall(r'\[(?:[^\]]|\]\])+\]|"(?:[^"]|"")+"', inside):
                if ident.startswith('"'):
                    column = ident[1:-1].replace('""', '"')
                else:
                    column = _unquote(ident)
                if column in known and column not in referenced:
                    referenced.append(column)
            self._add(table, name, _constraint_info(referenced, check=True))
        else:
            columns, _ = _index_columns(inside)
            ref = re.match(r"\s*REFERENCES\s+(%s)\s*\(([^)]*)\)" % _IDENT, body[close + 1 :], re.I)
            if ref:
                to_columns, _ = _index_columns(ref.group(2))
                self._add(
                    table,
                    name,
                    _constraint_info(
                        columns,
                        foreign_key=(_unquote(ref.group(1)), to_columns[0] if to_columns else ""),
                    ),
                )

    def _drop_name(self, table, name):
        entry = self.tables.get(table)
        if entry is not None:
            entry["constraints"].pop(name, None)
        self.filters.pop((table, name), None)

    def _drop_column(self, table, column):
        entry = self.tables.get(table)
        if entry is None:
            return
        if column in entry["columns"]:
            entry["columns"].remove(column)
        for name in [n for n, i in entry["constraints"].items() if column in i["columns"]]:
            del entry["constraints"][name]

    def _drop_table(self, table):
        self.tables.pop(table, None)
        for key in [k for k in self.filters if k[0] == table]:
            del self.filters[key]
        for entry in self.tables.values():  # sql_delete_table drops incoming FKs
            for name in [
                n for n, i in entry["constraints"].items() if i["foreign_key"] and i["foreign_key"][0] == table
            ]:
                del entry["constraints"][name]

    def _rename_table(self, old, new):
        if old not in self.tables:
            return
        self.tables[new] = self.tables.pop(old)
        for key in [k for k in self.filters if k[0] == old]:
            self.filters[(new, key[1])] = self.filters.pop(key)
        for entry in self.tables.values():
            for info in entry["constraints"].values():
                if info["foreign_key"] and info["foreign_key"][0] == old:
                    info["foreign_key"] = (new, info["foreign_key"][1])

    def _rename_column(self, table, old, new):
        entry = self.tables.get(table)
        if entry is None:
            return
        entry["columns"] = [new if c == old else c for c in entry["columns"]]
        for info in entry["constraints"].values():
            info["columns"] = [new if c == old else c for c in info["columns"]]
        for other in self.tables.values():
            for info in other["constraints"].values():
                if info["foreign_key"] == (table, old):
                    info["foreign_key"] = (table, new)

    # -- statements -------------------------------------------------------

    def apply(self, sql):
        """Update the catalogue with the effect of one collected statement."""
        for statement in _split_top_level(sql, ";"):
            self._apply_one(statement)

    def _apply_one(self, sql):
        masked = _mask(sql)
        stripped = sql.strip()
        flags = re.I | re.S

        match = re.match(r"CREATE\s+TABLE\s+(%s)\s*\(" % _IDENT, stripped, flags)
        if match:
            table = _unquote(match.group(1))
            self._table(table)
            open_index = match.end() - 1
            body = stripped[open_index + 1 : _closing_paren(stripped, open_index)]
            for item in _split_top_level(body, ","):
                head = _mask(item)
                named = re.match(r"CONSTRAINT\s+(%s)\s+" % _IDENT, item, re.I)
                if named and head.upper().startswith("CONSTRAINT"):
                    self._add_table_constraint(table, _unquote(named.group(1)), item[named.end() :])
                elif re.match(r"(PRIMARY\s+KEY|UNIQUE|CHECK|FOREIGN\s+KEY)\b", head, re.I):
                    self._add_table_constraint(table, None, item)
                else:
                    col = re.match(r"(%s)\s*" % _IDENT, item)
                    if col:
                        self._add_column(table, _unquote(col.group(1)), item[col.end() :])
            return

        match = re.match(
            r"CREATE\s+(UNIQUE\s+)?(?:(?:NON)?CLUSTERED\s+)?INDEX\s+(%s)\s+ON\s+(%s)\s*\(" % (_IDENT, _IDENT),
            stripped,
            flags,
        )
        if match:
            name, table = _unquote(match.group(2)), _unquote(match.group(3))
            open_index = match.end() - 1
            close = _closing_paren(stripped, open_index)
            columns, orders = _index_columns(stripped[open_index + 1 : close])
            info = _constraint_info(columns, unique=bool(match.group(1)), index=True)
            info["orders"] = orders
            info["type"] = "idx"
            self._add(table, name, info)
            where = re.search(r"\bWHERE\b", _mask(stripped[close + 1 :]), re.I)
            if where:
                condition = stripped[close + 1 + where.end() :].strip().rstrip(";").strip()
                self.filters[(table, name)] = "(%s)" % condition
            return

        match = re.match(r"DROP\s+INDEX\s+(%s)\s+ON\s+(%s)" % (_IDENT, _IDENT), stripped, flags)
        if match:
            self._drop_name(_unquote(match.group(2)), _unquote(match.group(1)))
            return

        match = re.match(r"ALTER\s+TABLE\s+(%s)\s+" % _IDENT, stripped, flags)
        if match:
            self._apply_alter_table(_unquote(match.group(1)), stripped[match.end() :])
            return

        match = re.match(
            r"EXEC(?:UTE)?\s+sp_rename\s+N?'(%s)\.(%s)'\s*,\s*N?'?(%s)'?\s*,\s*N?'COLUMN'" % (_IDENT, _IDENT, _IDENT),
            stripped,
            flags,
        )
        if match:
            self._rename_column(_unquote(match.group(1)), _unquote(match.group(2)), _unquote(match.group(3)))
            return
        match = re.match(
            r"EXEC(?:UTE)?\s+sp_rename\s+N?'?(%s)'?\s*,\s*N?'?(%s)'?\s*$" % (_IDENT, _IDENT),
            stripped,
            flags,
        )
        if match:
            self._rename_table(_unquote(match.group(1)), _unquote(match.group(2)))
            return

        # mssql-django's DROP TABLE is a batch that first drops incoming FKs.
        for found in re.finditer(r"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?", masked, re.I):
            ident = re.match(_IDENT, sql[found.end() :])
            if ident:
                self._drop_table(_unquote(ident.group(0)))

    def _apply_alter_table(self, table, rest):
        flags = re.I | re.S
        match = re.match(r"ADD\s+CONSTRAINT\s+(%s)\s+" % _IDENT, rest, flags)
        if match:
            body = rest[match.end() :]
            if re.match(r"DEFAULT\b", _mask(body), re.I):
                target = re.search(r"\bFOR\s+(%s)\s*$" % _IDENT, body, flags)
                if target:
                    self._add(
                        table,
                        _unquote(match.group(1)),
                        _constraint_info([_unquote(target.group(1))], default=True),
                    )
                return
            self._add_table_constraint(table, _unquote(match.group(1)), body)
            return
        match = re.match(r"ADD\s+DEFAULT\b", _mask(rest), flags)
        if match:
            target = re.search(r"\bFOR\s+(%s)\s*$" % _IDENT, rest, flags)
            if target:
                self._add(table, None, _constraint_info([_unquote(target.group(1))], default=True))
            return
        match = re.match(r"ADD\s+(PRIMARY\s+KEY|UNIQUE|CHECK|FOREIGN\s+KEY)\b", _mask(rest), flags)
        if match:
            self._add_table_constraint(table, None, rest[3:].strip())
            return
        match = re.match(r"ADD\s+(%s)\s*" % _IDENT, rest, flags)
        if match:
            for item in _split_top_level(rest[3:], ","):
                col = re.match(r"(%s)\s*" % _IDENT, item)
                if col:
                    self._add_column(table, _unquote(col.group(1)), item[col.end() :])
            return
        match = re.match(r"DROP\s+CONSTRAINT\s+(?:IF\s+EXISTS\s+)?(%s)" % _IDENT, rest, flags)
        if match:
            self._drop_name(table, _unquote(match.group(1)))
            return
        match = re.match(r"DROP\s+COLUMN\s+(?:IF\s+EXISTS\s+)?(%s)" % _IDENT, rest, flags)
        if match:
            self._drop_column(table, _unquote(match.group(1)))
            return
        # ALTER COLUMN, SET (...), NOCHECK...: no change to the catalogue.

    # -- placeholders -> dynamic SQL --------------------------------------

    def _lookup_sql(self, variable, table, info):
        table_id = "OBJECT_ID(%s)" % _literal(_quote(table))
        if info["primary_key"]:
            what = "PRIMARY KEY"
            query = (
                "SELECT %s = kc.[name] FROM sys.key_constraints AS kc"
                " WHERE kc.[parent_object_id] = %s AND kc.[type] = 'PK';"
            ) % (variable, table_id)
        elif info["unique_constraint"]:
            what = "UNIQUE constraint on (%s)" % ", ".join(info["columns"])
            query = (
                "SELECT %s = kc.[name] FROM sys.key_constraints AS kc"
                " WHERE kc.[parent_object_id] = %s AND kc.[type] = 'UQ'"
                " AND (SELECT STRING_AGG(c.[name], N',') WITHIN GROUP (ORDER BY ic.[key_ordinal])"
                " FROM sys.index_columns AS ic INNER JOIN sys.columns AS c"
                " ON c.[object_id] = ic.[object_id] AND c.[column_id] = ic.[column_id]"
                " WHERE ic.[object_id] = kc.[parent_object_id] AND ic.[index_id] = kc.[unique_index_id])"
                " = %s;"
            ) % (variable, table_id, _literal(",".join(info["columns"])))
        elif info["default"] or info["check"]:
            view = "sys.default_constraints" if info["default"] else "sys.check_constraints"
            what = "%s constraint on %s" % (
                "DEFAULT" if info["default"] else "CHECK",
                ", ".join(info["columns"]),
            )
            query = (
                "SELECT %s = dc.[name] FROM %s AS dc"
                " WHERE dc.[parent_object_id] = %s"
                " AND dc.[parent_column_id] = COLUMNPROPERTY(dc.[parent_object_id], %s, 'ColumnId');"
            ) % (variable, view, table_id, _literal(info["columns"][0] if info["columns"] else ""))
        else:
            raise OfflineConnectionError(
                "sqlserver_ddl: cannot look up a server-named %r constraint on %s" % (info, table)
            )
        return what, query

    def resolve(self, sql):
        """Rewrite a statement using placeholder names into dynamic SQL."""
        tokens = sorted(set(_PLACEHOLDER_RE.findall(sql)), key=int)
        if not tokens:
            return sql
        lines = [
            "-- The constraint below was named by SQL Server; look its name up.",
        ]
        declares, lookups, replaced = [], [], _literal(sql)
        for number, token in enumerate(tokens, 1):
            name = "__mssql_sysname_%s__" % token
            table, info = self.find(name)
            if info is None:
                raise OfflineConnectionError("sqlserver_ddl: statement refers to an unknown constraint: %s" % sql)
            variable = "@name%d" % number
            what, query = self._lookup_sql(variable, table, info)
            declares.append("%s sysname" % variable)
            lookups.append(query)
            lookups.append(
                "IF %s IS NULL THROW 50000, %s, 1;" % (variable, _literal("%s on %s not found" % (what, _quote(table))))
            )
            if _quote(name) not in sql:
                raise OfflineConnectionError("sqlserver_ddl: placeholder used unquoted in: %s" % sql)
            replaced = "REPLACE(%s, %s, QUOTENAME(%s))" % (
                replaced,
                _literal(_quote(name)),
                variable,
            )
        lines.append("DECLARE %s, @sql nvarchar(max);" % ", ".join(declares))
        lines.extend(lookups)
        lines.append("SET @sql = %s;" % replaced)
        lines.append("EXEC sp_executesql @sql;")
        return "\n".join(lines)

    # -- answers to the few raw queries mssql-django's schema editor runs --

    def answer(self, sql, params=None):
        """Rows for a raw query issued through ``connection.cursor()``."""
        text = " ".join(sql.split())
        match = re.search(r"OBJECT_ID\('([^']*)'\) and i\.name = '([^']*)'", text, re.I)
        if match and "filter_definition" in text:
            table, name = _unquote(match.group(1)), match.group(2)
            info = self.tables.get(table, {}).get("constraints", {}).get(name)
            if info is None:
                return []
            condition = self.filters.get((table, name))
            return [(column, condition) for column in info["columns"]]
        match = re.search(
            r"INFORMATION_SCHEMA\.CONSTRAINT_COLUMN_USAGE WHERE CONSTRAINT_NAME = '([^']*)'",
            text,
            re.I,
        )
        if match:
            _, info = self.find(match.group(1))
            if info is not None and not info["index"] and not info["default"]:
                return [(1,)]
            return []
        match = re.search(r"t\.name = '((?:[^']|'')*)' AND c\.name = '((?:[^']|'')*)'", text, re.I)
        if match and "sys.default_constraints" in text:
            table = match.group(1).replace("''", "'")
            column = match.group(2).replace("''", "'")
            return [(name,) for name in self.default_constraint(table, column)]
        raise OfflineConnectionError("sqlserver_ddl runs without a database; this query would need one: %s" % text)


# ---------------------------------------------------------------------------
# Offline mssql-django backend
# ---------------------------------------------------------------------------


class OfflineConnectionError(RuntimeError):
    """Something tried to reach SQL Server while generating DDL offline."""


class OfflineCursor:
    """Stands in for a pyodbc cursor; answers from the simulated catalogue."""

    def __init__(self, connection):
        self.connection = connection
        self._rows = []

    def execute(self, sql, params=None):
        self._rows = list(self.connection.catalog.answer(str(sql), params))
        return self

    def executemany(self, sql, param_list):
        raise OfflineConnectionError("sqlserver_ddl: executemany() needs a database")

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size=None):
        size = size or 1
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def close(self):
        self._rows = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __iter__(self):
        return iter(self.fetchall())


class _RecordingList(list):
    """A list that remembers the order in which items were added."""

    def __init__(self):
        super().__init__()
        self.order = []

    def append(self, item):
        self.order.append(item)
        super().append(item)

    def extend(self, items):
        items = list(items)
        self.order.extend(items)
        super().extend(items)

    def insert(self, index, item):
        self.order.append(item)
        super().insert(index, item)


_offline_classes_cache = {}


def _offline_classes():
    """Build (once) the offline subclasses of mssql-django's backend classes.

    Imported lazily: importing this module must not require mssql-django or
    pyodbc (``settings.py`` uses :func:`mssql_options_from_url`).
    """
    if _offline_classes_cache:
        return _offline_classes_cache["wrapper"]

    from mssql.base import DatabaseWrapper
    from mssql.introspection import DatabaseIntrospection
    from mssql.schema import DatabaseSchemaEditor

    class OfflineIntrospection(DatabaseIntrospection):
        def get_constraints(self, cursor, table_name):
            return self.connection.catalog.get_constraints(table_name)

    class OfflineSchemaEditor(DatabaseSchemaEditor):
        """Collect-only schema editor that never opens a transaction."""

        def __init__(self, connection, collect_sql=True, atomic=True):
            if not collect_sql:
                raise OfflineConnectionError("sqlserver_ddl: the offline schema editor can only collect SQL")
            super().__init__(connection, collect_sql=True, atomic=atomic)
            # Claim to be atomic so Migration.apply() never opens
            # transaction.atomic() (which would connect); the generator writes
            # BEGIN TRANSACTION / COMMIT around atomic migrations itself.
            self.atomic_migration = True
            # mssql-django keeps this on the class; keep it per generation run.
            self._deferred_unique_indexes = connection.offline_deferred_unique_indexes

        def __enter__(self):
            self.deferred_sql = []
            return self

        def __exit__(self, exc_type, exc_value, traceback):
            if exc_type is None:
                for sql in self.deferred_sql:
                    self.execute(sql, None)

        def create_model(self, model):
            # mssql-django de-duplicates deferred SQL with list(set(...)),
            # whose order depends on string hashing (PYTHONHASHSEED).  Record
            # the statements in the order they were queued and restore it.
            outer = self.deferred_sql
            recording = _RecordingList()
            self.deferred_sql = recording
            try:
                super().create_model(model)
            finally:
                produced = list(self.deferred_sql)
                self.deferred_sql = outer
            position = {}
            for index, statement in enumerate(recording.order):
                position.setdefault(id(statement), index)
            known = sorted((s for s in produced if id(s) in position), key=lambda s: position[id(s)])
            later = [s for s in produced if id(s) not in position]
            for statement in known + later:
                if statement not in self.deferred_sql:
                    self.deferred_sql.append(statement)

        def execute(self, sql, params=(), has_result=False):
            if has_result:
                # mssql-django asks for the name of a column's DEFAULT
                # constraint before dropping it.  Answer from the catalogue
                # instead of collecting the SELECT.
                return self.connection.catalog.answer(str(sql), params)
            before = len(self.collected_sql)
            super().execute(sql, params)
            catalog = self.connection.catalog
            for index in range(before, len(self.collected_sql)):
                statement = self.collected_sql[index]
                resolved = catalog.resolve(statement)
                catalog.apply(statement)
                self.collected_sql[index] = resolved
            return None

    class OfflineDatabaseWrapper(DatabaseWrapper):
        """mssql-django wrapper that refuses to connect.

        The server version is pinned instead of queried, catalogue questions
        are answered by :class:`SimulatedCatalog`, and any attempt to open a
        real connection raises :class:`OfflineConnectionError`.
        """

        SchemaEditorClass = OfflineSchemaEditor
        introspection_class = OfflineIntrospection
        # Shadow mssql-django's cached_property (which runs a query).
        sql_server_version = SQLSERVER_VERSION
        to_azure_sql_db = False

        def __init__(self, settings_dict, alias=OFFLINE_ALIAS):
            super().__init__(settings_dict, alias)
            self.catalog = SimulatedCatalog()
            self.offline_deferred_unique_indexes = defaultdict(list)

        def _refuse(self, *args, **kwargs):
            raise OfflineConnectionError(
                "sqlserver_ddl generates DDL offline and must not connect to SQL Server (alias %r)" % self.alias
            )

        get_new_connection = _refuse
        connect = _refuse
        ensure_connection = _refuse
        _nodb_cursor = _refuse

        def cursor(self):
            return OfflineCursor(self)

        chunked_cursor = cursor

    _offline_classes_cache["wrapper"] = OfflineDatabaseWrapper
    return OfflineDatabaseWrapper


def build_offline_connection(alias=OFFLINE_ALIAS, **settings_overrides):
    """An offline mssql-django ``DatabaseWrapper`` for a fake SQL Server alias.

    It is not registered in ``django.db.connections``; use
    :func:`offline_connection` for that.
    """
    from django.db.utils import ConnectionHandler

    database = {
        "ENGINE": "mssql",
        "NAME": "hartonomous",
        "HOST": "sqlserver.invalid",
        "PORT": "1433",
        "USER": "offline",
        "PASSWORD": "",
        "OPTIONS": {"driver": "ODBC Driver 18 for SQL Server"},
    }
    database.update(settings_overrides)
    # Let Django fill in every default key (TIME_ZONE, TEST, ...).
    settings_dict = ConnectionHandler({"default": database}).settings["default"]
    wrapper_class = _offline_classes()
    return wrapper_class(settings_dict, alias)


@contextlib.contextmanager
def offline_connection(alias=OFFLINE_ALIAS, **settings_overrides):
    """Register an offline wrapper as ``connections[alias]`` while in use.

    Migration operations look the alias up in ``django.db.connections``
    (``Options.can_migrate``, routers), so it has to be there; it is removed
    again on exit and never appears in ``settings.DATABASES``.
    """
    from django.db import connections

    if alias in connections.settings:
        raise ValueError("alias %r is a configured database; pick another one" % alias)
    wrapper = build_offline_connection(alias, **settings_overrides)
    missing = object()
    previous = getattr(connections._connections, alias, missing)
    connections[alias] = wrapper
    try:
        yield wrapper
    finally:
        if previous is missing:
            del connections[alias]
        else:
            connections[alias] = previous


# ---------------------------------------------------------------------------
# DDL generation
# ---------------------------------------------------------------------------


def migration_plan():
    """The plan ``migrate`` would apply to an empty database."""
    from django.core.management.base import CommandError
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(None)  # no connection: nothing is "applied"
    conflicts = executor.loader.detect_conflicts()
    if conflicts:
        names = "; ".join(
            "%s: %s" % (app, ", ".join(sorted(migrations))) for app, migrations in sorted(conflicts.items())
        )
        raise CommandError("Conflicting migrations (run makemigrations --merge): %s" % names)
    targets = executor.loader.graph.leaf_nodes()
    return executor, executor.migration_plan(targets, clean_start=True)


def collect_migration_sql(connection):
    """``[(migration, atomic, [statement, ...]), ...]`` for the whole plan."""
    from django.db.migrations.state import ProjectState

    executor, plan = migration_plan()
    state = ProjectState(real_apps=executor.loader.unmigrated_apps)
    collected = []
    for migration, backwards in plan:
        assert not backwards
        with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
            state = migration.apply(state, editor, collect_sql=True)
        atomic = migration.atomic and connection.features.can_rollback_ddl
        collected.append((migration, atomic, list(editor.collected_sql)))
    return collected


_HEADER = """\
-- =============================================================================
-- GENERATED FILE - DO NOT EDIT.
--
-- SQL Server DDL of every migration of every installed app, in the order
-- `manage.py migrate` applies them to an empty database.
--
-- Regenerate:  {command}
-- Verify:      {command} --check
--
-- Generated offline (no database connection) with mssql-django {mssql_version}
-- for SQL Server {version} (major version {major}). Each migration is one
-- transaction; every statement is its own batch (GO), as migrate sends them.
-- Run with:  sqlcmd -b -I -d <database> -i sql/schema.sql
--
-- Provision real databases with `manage.py migrate`: it also records applied
-- migrations in django_migrations and runs data migrations, which appear
-- here only as "THIS OPERATION CANNOT BE WRITTEN AS SQL". Constraints that
-- SQL Server names itself are dropped with dynamic SQL that looks the name up.
-- =============================================================================
"""

_PREAMBLE = [
    "SET ANSI_NULLS ON;",
    "SET ANSI_PADDING ON;",
    "SET ANSI_WARNINGS ON;",
    "SET ARITHABORT ON;",
    "SET CONCAT_NULL_YIELDS_NULL ON;",
    "SET NUMERIC_ROUNDABORT OFF;",
    "SET QUOTED_IDENTIFIER ON;",
    "SET XACT_ABORT ON;",
]


def _mssql_version():
    try:
        from importlib.metadata import version

        return version("mssql-django")
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


def render_schema_sql(collected, connection):
    """Render collected migration SQL as the text of ``sql/schema.sql``."""
    ops = connection.ops
    out = [
        _HEADER.format(
            command=REGENERATE_COMMAND,
            mssql_version=_mssql_version(),
            version=SQLSERVER_VERSION,
            major=SQLSERVER_MAJOR_VERSION,
        ).rstrip("\n"),
        "",
    ]
    out.extend(_PREAMBLE)
    out.append("GO")
    for migration, atomic, statements in collected:
        out.append("")
        out.append("-- " + "-" * 77)
        out.append("-- Migration %s.%s" % (migration.app_label, migration.name))
        out.append("-- " + "-" * 77)
        if atomic:
            out.append(ops.start_transaction_sql().rstrip(";") + ";")
            out.append("GO")
        for statement in statements:
            text = "\n".join(line.rstrip() for line in str(statement).strip("\n").splitlines())
            text = _dedent_block(text)
            if text.lstrip().startswith("--") and all(line.lstrip().startswith("--") for line in text.splitlines()):
                out.append(text)
                continue
            out.append(text)
            out.append("GO")
        if atomic:
            out.append(ops.end_transaction_sql().rstrip(";") + ";")
            out.append("GO")
    return "\n".join(out) + "\n"


def _dedent_block(text):
    """Drop the common indentation of the continuation lines of a statement
    (mssql-django's multi-line templates are indented like Python code)."""
    lines = text.splitlines()
    while len(lines) > 1 and lines[-1].strip() == ";":  # "...\n;" -> "...;"
        lines = lines[:-2] + [lines[-2].rstrip() + ";"]
    if len(lines) < 2:
        return lines[0].strip() if lines else ""
    rest = [line for line in lines[1:] if line.strip()]
    indent = min((len(line) - len(line.lstrip(" ")) for line in rest), default=0)
    first = lines[0].strip()
    body = [line[indent:] if line.strip() else "" for line in lines[1:]]
    if not first:
        return "\n".join(body).strip("\n")
    return "\n".join([first] + body)


def generate_schema_sql(alias=OFFLINE_ALIAS):
    """Return the full, deterministic text of ``sql/schema.sql``."""
    with offline_connection(alias) as connection:
        collected = collect_migration_sql(connection)
        return render_schema_sql(collected, connection)


def default_schema_path():
    """``<BASE_DIR>/sql/schema.sql`` (falls back to the current directory)."""
    from django.conf import settings

    base = getattr(settings, "BASE_DIR", None)
    return Path(base or Path.cwd()) / DEFAULT_SCHEMA_PATH


def schema_diff(current, expected, path="sql/schema.sql", limit=60):
    """First ``limit`` lines of a unified diff, for error messages."""
    lines = list(
        difflib.unified_diff(
            current.splitlines(),
            expected.splitlines(),
            fromfile="%s (on disk)" % path,
            tofile="%s (generated)" % path,
            lineterm="",
        )
    )
    if len(lines) > limit:
        lines = lines[:limit] + ["... (%d more diff lines)" % (len(lines) - limit)]
    return "\n".join(lines)


def check_schema_file(path=None, expected=None):
    """``None`` when ``path`` matches the generated DDL, else a message."""
    default = default_schema_path()
    path = Path(path) if path is not None else default
    if path.resolve() == default.resolve():
        label, command = "sql/schema.sql", REGENERATE_COMMAND
    else:
        label, command = str(path), "%s --output %s" % (REGENERATE_COMMAND, path)
    if expected is None:
        expected = generate_schema_sql()
    if not path.exists():
        return "%s does not exist: run `%s`" % (label, command)
    current = path.read_text(encoding="utf-8")
    if current == expected:
        return None
    return "%s is stale: run `%s`\n%s" % (label, command, schema_diff(current, expected, label))

"""Generate (or check) sql/schema.sql: the SQL Server DDL of every migration.

    python manage.py sqlserver_ddl                 # write sql/schema.sql
    python manage.py sqlserver_ddl --check         # exit 1 if it is stale
    python manage.py sqlserver_ddl --output -      # print to stdout

No database connection is made and DATABASE_URL does not need to point at SQL
Server: the DDL is rendered by mssql-django against an in-memory alias pinned
to SQL Server 2022.  The logic lives in projects/sqlserver.py.
"""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from projects import sqlserver


class Command(BaseCommand):
    help = (
        "Write the SQL Server DDL of all migrations of all installed apps (the plan "
        "`migrate` applies to an empty database) to sql/schema.sql, offline."
    )
    # Pure code generation: no system checks (they may want a database).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            "-o",
            default=None,
            help="File to write (default: <BASE_DIR>/sql/schema.sql); '-' for stdout.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Do not write; exit non-zero when the file differs from the generated DDL.",
        )

    def handle(self, *args, output=None, check=False, **options):
        try:
            sql = sqlserver.generate_schema_sql()
        except ImportError as exc:
            raise CommandError(
                "mssql-django/pyodbc are needed to render SQL Server DDL (%s): "
                "pip install -r requirements-mssql.txt (pyodbc also needs the "
                "Debian package unixodbc)." % exc
            ) from exc
        except sqlserver.OfflineConnectionError as exc:
            raise CommandError(str(exc)) from exc

        if output == "-":
            if check:
                raise CommandError("--check needs a file, not '-'")
            sys.stdout.write(sql)
            return

        path = Path(output) if output else sqlserver.default_schema_path()
        if check:
            problem = sqlserver.check_schema_file(path, expected=sql)
            if problem:
                raise CommandError(problem)
            self.stdout.write("%s is up to date." % path)
            return

        path.parent.mkdir(parents=True, exist_ok=True)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == sql:
            self.stdout.write("%s is up to date." % path)
            return
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(sql)
        self.stdout.write(self.style.SUCCESS("Wrote %s (%d lines)." % (path, sql.count("\n"))))

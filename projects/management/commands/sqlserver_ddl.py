"""Write (or check) sql/schema.sql: the SQL Server schema an empty database gets.

    python manage.py sqlserver_ddl                 # write sql/schema.sql
    python manage.py sqlserver_ddl --check         # exit 1 when it is stale
    python manage.py sqlserver_ddl --output -      # print it

No database is connected to, and DATABASE_URL does not need to be SQL Server (projects/sqlserver.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projects import sqlserver


class Command(BaseCommand):
    help = "Write the SQL Server DDL of the current models (what migrate gives an empty database) to sql/schema.sql."
    requires_system_checks: list[str] = []  # pure code generation

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", default=None, help="File to write (default sql/schema.sql); '-': stdout.")
        parser.add_argument("--check", action="store_true", help="Exit non-zero when the file is stale; write nothing.")

    def handle(self, *args: Any, output: str | None = None, check: bool = False, **options: Any) -> None:
        try:
            sql = sqlserver.generate_schema_sql()
        except ImportError as exc:
            raise CommandError(
                f"mssql-django and pyodbc render the SQL Server DDL ({exc}): pip install -r requirements-mssql.txt "
                "(pyodbc also needs the Debian package unixodbc)."
            ) from exc
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
            self.stdout.write(f"{path} is up to date.")
            return
        if path.exists() and path.read_text(encoding="utf-8") == sql:
            self.stdout.write(f"{path} is up to date.")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql, encoding="utf-8", newline="\n")
        self.stdout.write(self.style.SUCCESS(f"Wrote {path} ({sql.count(chr(10))} lines)."))

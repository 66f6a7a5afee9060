"""The one door for values into shell text and SQL: every command or statement the deploy
builds from an inventory value quotes that value here, so it reaches the target as one
inert word (shell) or one identifier / literal (SQL), whatever it holds.

Shell words are quoted by `shlex.quote` (POSIX single quotes, which `sh` never expands);
SQL literals by psycopg's `sql.Literal`, rendered without a connection (the text goes into a
psql script on the target); SQL identifiers by the same rule psycopg's `sql.Identifier`
applies without a connection, written out in `ident`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def _text(value: object) -> str:
    text = str(value)
    if "\0" in text:
        # Neither a shell word nor a PostgreSQL string can hold NUL: refuse rather than cut.
        raise ValueError(f"a NUL byte cannot be passed on: {text!r}")
    return text


def quote(value: object) -> str:
    """One shell word holding exactly `value` (a path, a name, a number)."""
    return shlex.quote(_text(value))


def words(values: Iterable[object]) -> str:
    """Several shell words, each quoted: `rm -rf {words(paths)}` removes those paths, no more."""
    return " ".join(quote(v) for v in values)


def command(*argv: object) -> str:
    """A command line whose every word is quoted: `command("install", "-d", path)`."""
    return words(argv)


def ident(name: str) -> str:
    """A SQL identifier (role, database, schema), always double-quoted, a `"` inside doubled:
    PostgreSQL's rule, and exactly what psycopg's `sql.Identifier(name).as_string(None)`
    renders without a connection (tests/unit/test_shell_door.py holds them equal). Spelled out
    here so that reading commands (`sliceops status` computes the stamp's grants) need not
    load psycopg and libpq, which costs them half a second."""
    return '"' + _text(name).replace('"', '""') + '"'


def literal(value: str | int) -> str:
    """A SQL literal: a string quoted (E'...' when it holds a backslash), an int as a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    from psycopg import sql  # here, not at import: see ident()

    return sql.Literal(_text(value)).as_string(None).strip()


def echo(line: str) -> str:
    """Shell that prints `line` as it is (a report line may quote a user's value)."""
    return f"printf '%s\\n' {quote(line)}"

"""The one door for values into shell text and SQL: every command or statement the deploy
builds from an inventory value quotes that value here, so it reaches the target as one
inert word (shell) or one identifier / literal (SQL), whatever it holds.

Shell words are quoted by `shlex.quote` (POSIX single quotes, which `sh` never expands);
SQL identifiers and literals by psycopg's `sql.Identifier` and `sql.Literal`, rendered
without a connection (the text goes into a psql script on the target).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from psycopg import sql


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
    """A SQL identifier (role, database, schema), always double-quoted."""
    return sql.Identifier(_text(name)).as_string(None)


def literal(value: str | int) -> str:
    """A SQL literal: a string quoted (E'...' when it holds a backslash), an int as a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return sql.Literal(_text(value)).as_string(None).strip()


def echo(line: str) -> str:
    """Shell that prints `line` as it is (a report line may quote a user's value)."""
    return f"printf '%s\\n' {quote(line)}"

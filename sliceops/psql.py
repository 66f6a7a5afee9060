"""The one door to psql on the target: the superuser over the local socket, stopping at the
first error, fed from a quoted here-document the shell never expands.

Facts and operations build every psql call here. Values travel as shell-quoted words
(`-v name=value`, read in SQL as :'name' or :"name") or inside SQL quoted by
`sliceops.shell.ident` / `literal`; nothing is pasted into either unquoted.
"""

from __future__ import annotations

import re

from sliceops import shell

# Closes the here-document; a script holding this line would end early, so it is refused.
END = "SLICEOPS_SQL"
# psql reads a -d value holding '=' or starting with a URI scheme as connection options:
# only a plain database name may be passed.
_DBNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def argv(port: int, database: str = "postgres", *, variables: dict | None = None, tuples: bool = False) -> list[str]:
    """The psql invocation as an argument list: `tuples` gives unaligned rows without headers
    (-At), for output a fact parses; `variables` become `-v name=value`."""
    if not _DBNAME.match(database):
        raise ValueError(f"not a plain database name: {database!r}")
    out = ["runuser", "-u", "postgres", "--", "psql", "-XAtq" if tuples else "-Xq",
           "-v", "ON_ERROR_STOP=1", "-p", str(int(port)), "-d", database]
    for name, value in (variables or {}).items():
        out += ["-v", f"{name}={value}"]
    return out


def command(port: int, database: str = "postgres", *, variables: dict | None = None, tuples: bool = False) -> str:
    """The psql command line, every word quoted."""
    return shell.command(*argv(port, database, variables=variables, tuples=tuples))


def connect(database: str) -> str:
    """The psql meta-command moving a script's session to `database` (same socket, port and
    user): one psql may then work in several databases. Only a plain name, single-quoted
    (psql reads a quoted meta-command argument as one word and never as connection options)."""
    if not _DBNAME.match(database):
        raise ValueError(f"not a plain database name: {database!r}")
    return f"\\connect {shell.literal(database)}"


def heredoc(sql: str) -> str:
    """`sql` as a quoted here-document: the shell passes it on byte for byte."""
    if END in sql.splitlines():
        raise ValueError(f"a SQL script may not hold a line {END}")
    return f"<<'{END}'\n{sql.rstrip()}\n{END}"


def script(port: int, sql: str, database: str = "postgres", *, variables: dict | None = None,
           tuples: bool = False, redirect: str = "", prelude: str = "") -> str:
    """Shell running `sql` in psql. `redirect` is appended to the command (a constant such as
    `2>"$e"`). `prelude` is a command of the caller's (built through this door, e.g. the
    program that computes password verifiers on the target) whose standard output, psql
    meta-commands such as `\\set` lines, reaches psql ahead of `sql` through a pipe: never an
    argument, never a file, and no shell variable or substitution that grows with it."""
    psql = command(port, database, variables=variables, tuples=tuples)
    tail = f" {redirect}" if redirect else ""
    if not prelude:
        return f"{psql}{tail} {heredoc(sql)}"
    return f"{{ {prelude}\ncat {heredoc(sql)}\n}} | {psql}{tail}"


def query(port: int, sql: str, database: str = "postgres") -> str:
    """Shell printing the unaligned result of one statement (`-c`, quoted): `$(...)` material."""
    return f"{command(port, database, tuples=True)} -c {shell.quote(sql)}"

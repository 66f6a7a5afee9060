"""A slice host's tenant credentials, seen from outside: for each slice role whose password
file is on this host, the SCRAM-SHA-256 verifier computed here (the password never leaves
the host), and each credentials file's DATABASE_URL with the password shown as ***; and, on
the database host, the verifiers PostgreSQL holds for the slice roles."""

from __future__ import annotations

from pyinfra.api import FactBase

from sliceops import psql
from sliceops.facts.monitor_credential import DERIVED_VERIFIER_PY
from sliceops.facts.postgres import env_urls_command
from sliceops.names import TARGET_PYTHON
from sliceops.shell import command, literal, quote

# argv: password files (an unmatched glob arrives as itself and is skipped).
TENANT_VERIFIERS_PY = DERIVED_VERIFIER_PY + """\
import os
for path in sys.argv[1:]:
    try:
        pw = open(path, 'rb').read().strip()
    except OSError:
        continue
    if pw:
        print('VERIFIER %s %s' % (os.path.basename(path)[:-len('.password')], derived(pw)))
"""


class TenantCredentials(FactBase):
    """{"verifiers": {role: verifier}, "env_urls": {"<role>.env": url with ***}} of the slice
    roles (`prefix`*) whose files are in `secrets_dir` on this host."""

    def command(self, secrets_dir: str, prefix: str) -> str:
        glob = f"{quote(secrets_dir)}/{quote(prefix)}*.password"
        return (f"[ -x {quote(TARGET_PYTHON[0])} ] && {command(*TARGET_PYTHON, '-c', TENANT_VERIFIERS_PY)} {glob}; "
                f"{env_urls_command(secrets_dir)}; true")

    def process(self, output):
        out: dict = {"verifiers": {}, "env_urls": {}}
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            name, _, value = rest.partition(" ")
            if kind == "VERIFIER" and name and value:
                out["verifiers"][name] = value
            elif kind == "ENVURL" and name:
                out["env_urls"][name] = value
        return out

    def default(self):
        return {"verifiers": {}, "env_urls": {}}


class StoredVerifiers(FactBase):
    """{role: verifier PostgreSQL stores} of the login roles named `prefix`*, on the database host."""

    def command(self, port: int, prefix: str) -> str:
        pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
        sql = (f"SELECT 'ROLE ' || rolname || ' ' || coalesce(rolpassword, '-') FROM pg_authid "
               f"WHERE rolname LIKE {literal(pattern)} AND rolcanlogin;")
        # Before PostgreSQL runs there is nothing to read: {} (the here-document's end line
        # must stand alone, so the status is set on the next line).
        return f"{psql.command(port, tuples=True)} 2>/dev/null {psql.heredoc(sql)}\ntrue"

    def process(self, output):
        out = {}
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            role, _, value = rest.partition(" ")
            if kind == "ROLE" and role and value != "-":
                out[role] = value
        return out

    def default(self):
        return {}

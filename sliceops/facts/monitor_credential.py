"""A slice host's monitor credential, seen from outside: the SCRAM-SHA-256 verifier of its
password file (computed on that host; the password never leaves it), and the verifiers and
host rows the database host holds for the slice hosts' monitor roles."""

from __future__ import annotations

from pyinfra.api import FactBase

from sliceops import psql
from sliceops.names import TARGET_PYTHON
from sliceops.shell import command, quote

# PostgreSQL's verifier format (RFC 5802/7677) with a salt derived from the password itself,
# so the same password always gives the same verifier and a deploy can compare it with the
# stored one without the password leaving its host. The salt stays unique per password; an
# attacker holding the verifier learns nothing the verifier did not already offer. Shared
# with the slice hosts' tenant credentials (facts/tenant_credentials.py).
DERIVED_VERIFIER_PY = """\
import base64, hashlib, hmac, sys
def derived(pw):
    salt, n = hmac.new(pw, b'sliceops monitor salt', 'sha256').digest()[:16], 4096
    key = hashlib.pbkdf2_hmac('sha256', pw, salt, n)
    client = hmac.new(key, b'Client Key', 'sha256').digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return 'SCRAM-SHA-256$%d:%s$%s:%s' % (n, b64(salt), b64(hashlib.sha256(client).digest()),
        b64(hmac.new(key, b'Server Key', 'sha256').digest()))
"""
VERIFIER_PY = DERIVED_VERIFIER_PY + "print('VERIFIER ' + derived(open(sys.argv[1], 'rb').read().strip()))\n"


class MonitorVerifier(FactBase):
    """The verifier of the password file at `path` (None while it does not exist)."""

    def command(self, path: str) -> str:
        return f"if [ -s {quote(path)} ]; then {command(*TARGET_PYTHON, '-c', VERIFIER_PY, path)}; fi; true"

    def process(self, output):
        for line in output:
            if line.startswith("VERIFIER "):
                return line.split(" ", 1)[1].strip()
        return None

    def default(self):
        return None


_MONITORS_SQL = """\
SELECT 'ROLE ' || rolname || ' ' || coalesce(rolpassword, '-') FROM pg_authid
 WHERE rolname LIKE 'sliceops\\_monitor\\_%' AND rolcanlogin;
SELECT 'GRANTED ' || rolname FROM pg_roles
 WHERE rolname LIKE 'sliceops\\_monitor\\_%' AND has_database_privilege(rolname, current_database(), 'CONNECT')
   AND has_table_privilege(rolname, 'gateway.server_telemetry', 'SELECT');
SELECT 'HOST ' || role || ' ' || host FROM sliceops_fleet.monitor_hosts
 WHERE to_regclass('sliceops_fleet.monitor_hosts') IS NOT NULL;
"""


class HostMonitors(FactBase):
    """{"verifiers": {role: stored verifier}, "hosts": {role: host}, "granted": [roles that may
    connect to the gateway database and read back their server rows]} of the slice hosts' monitor roles, read on the database
    host (empty before sql/gateway/0005)."""

    def command(self, port: int, gateway_db: str) -> str:
        # sliceops_fleet.monitor_hosts may not exist yet: the second query then fails alone (no
        # ON_ERROR_STOP for this read).
        # (The here-document's end line must stand alone: the redirection goes before it.)
        return (f"{psql.command(port, gateway_db, tuples=True)} -v ON_ERROR_STOP=0 2>/dev/null "
                f"{psql.heredoc(_MONITORS_SQL)}\ntrue")

    def process(self, output):
        out: dict = {"verifiers": {}, "hosts": {}, "granted": []}
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            role, _, value = rest.partition(" ")
            if kind == "ROLE" and role:
                out["verifiers"][role] = value
            elif kind == "HOST" and role:
                out["hosts"][role] = value
            elif kind == "GRANTED" and role:
                out["granted"].append(role)
        return out

    def default(self):
        return {"verifiers": {}, "hosts": {}, "granted": []}

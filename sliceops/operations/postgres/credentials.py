"""The roles step's program on the target (Debian's python3, standard library only): one
process for the whole fleet, however many roles, instead of a shell command substitution
per role (300 of them crashed dash).

It reads a JSON document on its standard input: {"dir": the root-only secrets directory,
"roles": [[role, DATABASE_URL before the password or null, after it or null], ...]}. For
each role, in order, it creates the password file if it is missing or empty (32 random
alphanumerics, about 190 bits, nothing a URL or SQL literal must escape; mode 0600), writes
a tenant's credentials file (`DATABASE_URL=...`, 0600) when the role has a URL, and computes
the password's SCRAM-SHA-256 verifier (RFC 5802/7677, PostgreSQL's format: PostgreSQL stores
a verifier given to ALTER ROLE as it is, so the plaintext never reaches the server nor a
statement log; 4096 iterations and a 16-byte salt are PostgreSQL's own defaults).

Standard output, written once every role is done, is psql's: `\\set pw<i> '<verifier>'` per
role, read ahead of the roles script (see roles.py). Standard error carries one
`sliceops-progress roles <done> <total> <role>` line per role for the deploy's progress
(sliceops/report.py). No password is ever an argument of a process or printed.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import string
import sys

ALPHABET = string.ascii_letters + string.digits


def verifier(password: bytes, salt: bytes = b"", iterations: int = 4096) -> str:
    salt = salt or os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client = hmac.new(key, b"Client Key", "sha256").digest()
    server = hmac.new(key, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(hashlib.sha256(client).digest()), b64(server))


def _write(path: str, data: bytes) -> None:
    """Replace `path` with `data`, root-only, never half-written."""
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def password(path: str) -> bytes:
    """The role's password, generated first if the file is missing or empty."""
    try:
        with open(path, "rb") as f:
            have = f.read().strip()
    except FileNotFoundError:
        have = b""
    if not have:
        have = "".join(secrets.choice(ALPHABET) for _ in range(32)).encode()
        _write(path, have)
    return have


def main(stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr) -> int:
    request = json.load(stdin)
    folder, roles = request["dir"], request["roles"]
    lines = []
    for i, (role, url_head, url_tail) in enumerate(roles):
        pw = password(os.path.join(folder, role + ".password"))
        if url_head is not None:
            url = url_head.encode() + pw + url_tail.encode()
            _write(os.path.join(folder, role + ".env"), b"DATABASE_URL=" + url + b"\n")
        lines.append("\\set pw%d '%s'\n" % (i, verifier(pw)))
        stderr.write("sliceops-progress roles %d %d %s\n" % (i + 1, len(roles), role))
        stderr.flush()
    stdout.write("".join(lines))
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

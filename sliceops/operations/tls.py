"""TLS for PostgreSQL: a CA and a server certificate made on the database host with the
host's own openssl (the CA key is root's and never leaves it), and the CA certificate
(public) copied to every slice host, where each slice container mounts it read-only.

The server certificate names every address a client connects to (subjectAltName), so a
client with `sslmode=verify-full` accepts it; it is reissued when that list changes, when
it is not signed by the CA on the host, or when it expires within 30 days. The CA itself
is made once and kept: replacing it would recreate every slice container.
"""

from __future__ import annotations

import hashlib
import io

from pyinfra import host, state
from pyinfra.api import FileUploadCommand, StringCommand, operation

from sliceops import factcache, plan
from sliceops.facts.tls import FileSha256, PgTls, TlsState
from sliceops.inventory import Inventory
from sliceops.operations.peers import peer_fact, this_host
from sliceops.shell import command, quote
from sliceops.tuning import listen_addresses

CA_DAYS = 3650
SERVER_DAYS = 825  # what browsers' CAs may issue at most; renewed 30 days before its end
# P-256: every libpq, Node and Java client speaks it; a key is made in milliseconds.
_NEWKEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def certificate_sans(inv: Inventory) -> list[str]:
    """The server certificate's subjectAltNames: every address PostgreSQL listens on (loopback,
    the slice bridge's gateway, the inventory's listen_addresses), which are the addresses a
    client may name in its URL."""
    return sorted({f"IP:{address}" for address in listen_addresses(inv)})


def certificate_plan(have: TlsState, sans: list[str]) -> tuple[bool, bool]:
    """(make the CA, issue the server certificate)."""
    new_ca = not (have.ca_key and have.ca_pem)
    issue = new_ca or not have.server or not have.signed or not have.fresh or have.sans != sans
    return new_ca, issue


def certificate_command(tls_dir: str, instance: str, sans: list[str], new_ca: bool) -> str:
    """Shell that makes the CA (when `new_ca`) and issues a server certificate for `sans`,
    signed by it. The new key and certificate replace the old ones by rename, together."""
    d = quote(tls_dir)
    ext = "\n".join([
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        f"subjectAltName={','.join(sans)}",
    ])
    lines = [
        "set -e",
        "umask 077",
        command("install", "-d", "-m", "0755", tls_dir),
    ]
    if new_ca:
        lines.append(
            command("openssl", "req", "-x509", "-new", *_NEWKEY, "-keyout", f"{tls_dir}/ca.key",
                    "-out", f"{tls_dir}/ca.crt", "-days", CA_DAYS, "-subj", f"/CN=sliceops {instance} PostgreSQL CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign") + " 2>/dev/null"
        )
        lines.append(command("chmod", "0644", f"{tls_dir}/ca.crt"))
    lines += [
        f"printf '%s\\n' {quote(ext)} >{d}/server.ext",
        command("openssl", "req", "-new", *_NEWKEY, "-keyout", f"{tls_dir}/server.key.new",
                "-out", f"{tls_dir}/server.csr", "-subj", f"/CN=sliceops {instance} PostgreSQL") + " 2>/dev/null",
        f"{command('openssl', 'x509', '-req', '-in', f'{tls_dir}/server.csr', '-CA', f'{tls_dir}/ca.crt', '-CAkey', f'{tls_dir}/ca.key', '-days', SERVER_DAYS, '-extfile', f'{tls_dir}/server.ext', '-out', f'{tls_dir}/server.crt.new')}"
        f" -set_serial \"0x$(openssl rand -hex 16)\" 2>/dev/null",
        # PostgreSQL reads a key owned by root only if its group may read it and no one else.
        command("chown", "root:postgres", f"{tls_dir}/server.key.new"),
        command("chmod", "0640", f"{tls_dir}/server.key.new"),
        command("chmod", "0644", f"{tls_dir}/server.crt.new"),
        command("mv", "-f", f"{tls_dir}/server.key.new", f"{tls_dir}/server.key"),
        command("mv", "-f", f"{tls_dir}/server.crt.new", f"{tls_dir}/server.crt"),
        command("rm", "-f", f"{tls_dir}/server.csr", f"{tls_dir}/server.ext"),
        "echo " + quote(f"sliceops: {'made a CA and ' if new_ca else ''}issued PostgreSQL's certificate for {', '.join(sans)}"),
    ]
    return "\n".join(lines)


@operation(is_idempotent=True)
def server_certificate(inv: Inventory):
    """The database host's CA (made once) and a server certificate naming every address
    PostgreSQL listens on, signed by it."""
    sans = certificate_sans(inv)
    have = factcache.get(PgTls, reads={TLS}, owned=True, tls_dir=inv.tls_dir)
    new_ca, issue = certificate_plan(have, sans)
    if not issue:
        host.noop(f"PostgreSQL's certificate names {', '.join(sans)}, signed by the instance's CA")
        return
    plan.record("postgres TLS", "CA made" if new_ca else "certificate issued", ", ".join(sans))
    factcache.touches(TLS)
    yield StringCommand(certificate_command(inv.tls_dir, inv.instance, sans, new_ca))


# What the certificate step writes (factcache subject): the database host's TLS folder.
TLS = "postgres tls"


def database_ca(inv: Inventory) -> str | None:
    """The CA certificate (PEM) as the database host holds it; None until it is made. Read
    from the database host (this host in a one-host inventory): it is public, so it may pass
    through the controller."""
    db = inv.database_host.name
    if db == this_host(inv):
        # Read once per deploy unless the certificate step wrote the folder: nothing else does.
        return factcache.get(PgTls, reads={TLS}, owned=True, tls_dir=inv.tls_dir).ca_pem
    return peer_fact(db, PgTls, tls_dir=inv.tls_dir).ca_pem


@operation(is_idempotent=True)
def ca_copy(inv: Inventory):
    """The slice host's copy of the database's CA certificate, written in place (a slice
    container's bind mount keeps following the same file)."""
    pem = database_ca(inv)
    # The cache's copy: the containers step right after reads the same digest (for their spec).
    have = factcache.get(FileSha256, path=inv.pg_ca_file)
    if pem is None:
        if state.is_executing:
            yield StringCommand(f"echo {quote('sliceops: the database host has no CA certificate yet')} >&2; exit 1")
        return
    if have == hashlib.sha256(pem.encode()).hexdigest():
        host.noop(f"{inv.pg_ca_file} holds the database's CA certificate")
        return
    plan.record("postgres CA copy", "written", inv.pg_ca_file)
    yield StringCommand(command("install", "-d", "-m", "0755", "/etc/sliceops", inv.etc_dir))
    yield FileUploadCommand(io.BytesIO(pem.encode()), f"{inv.pg_ca_file}.new")
    # cat > keeps the inode a running container's bind mount points at.
    yield StringCommand(
        f"chmod 0644 {quote(inv.pg_ca_file + '.new')} && cat {quote(inv.pg_ca_file + '.new')} >{quote(inv.pg_ca_file)}"
        f" && chmod 0644 {quote(inv.pg_ca_file)} && rm -f {quote(inv.pg_ca_file + '.new')}"
    )

"""PostgreSQL's TLS material on the database host (the CA, the server certificate's SANs,
whether it is signed by that CA and not about to expire), and a slice host's copy of the CA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from sliceops.shell import quote

# Renew the server certificate when it expires within 30 days.
RENEW_SECONDS = 30 * 24 * 3600


@dataclass
class TlsState:
    """ca_key: the CA's key is there; ca_pem: the CA certificate (public), None if missing;
    server: the server key and certificate are there; sans: the certificate's subject
    alternative names as "IP:a.b.c.d" / "DNS:name"; signed: by this CA; fresh: not expiring
    within RENEW_SECONDS."""

    ca_key: bool = False
    ca_pem: str | None = None
    server: bool = False
    sans: list[str] = field(default_factory=list)
    signed: bool = False
    fresh: bool = False

    @property
    def ca_sha256(self) -> str | None:
        return hashlib.sha256(self.ca_pem.encode()).hexdigest() if self.ca_pem else None


class PgTls(FactBase):
    """The `TlsState` of `tls_dir` on the database host."""

    def command(self, tls_dir: str) -> str:
        d = quote(tls_dir)
        ca, crt, key = f"{d}/ca.crt", f"{d}/server.crt", f"{d}/server.key"
        return (
            f"[ -s {d}/ca.key ] && echo CAKEY; "
            f"if [ -s {ca} ]; then echo CA_BEGIN; cat {ca}; echo; echo CA_END; fi; "
            f"if [ -s {key} ] && [ -s {crt} ]; then echo SERVER; "
            # "X509v3 Subject Alternative Name:" then one line "IP Address:1.2.3.4, DNS:x".
            f"openssl x509 -in {crt} -noout -ext subjectAltName 2>/dev/null | sed -n '2,$s/^ */SANS /p'; "
            f"openssl verify -CAfile {ca} {crt} >/dev/null 2>&1 && echo SIGNED; "
            f"openssl x509 -in {crt} -noout -checkend {RENEW_SECONDS} >/dev/null 2>&1 && echo FRESH; "
            f"fi; true"
        )

    def process(self, output):
        return self.parse(output)

    def default(self):
        return TlsState()

    @staticmethod
    def parse(lines: list[str]) -> TlsState:
        out = TlsState()
        pem: list[str] | None = None
        for line in lines:
            if pem is not None:
                if line.strip() == "CA_END":
                    out.ca_pem = "\n".join(x for x in pem if x.strip()) + "\n"
                    pem = None
                else:
                    pem.append(line.rstrip())
                continue
            word = line.strip()
            if word == "CA_BEGIN":
                pem = []
            elif word == "CAKEY":
                out.ca_key = True
            elif word == "SERVER":
                out.server = True
            elif word == "SIGNED":
                out.signed = True
            elif word == "FRESH":
                out.fresh = True
            elif word.startswith("SANS "):
                out.sans = sorted(_san(part) for part in word[5:].split(",") if part.strip())
        return out


def _san(text: str) -> str:
    """openssl's "IP Address:10.0.0.1" / "DNS:db" as the config's "IP:10.0.0.1" / "DNS:db"."""
    kind, _, value = text.strip().partition(":")
    return f"{'IP' if kind == 'IP Address' else kind}:{value.strip()}"


class FileSha256(FactBase):
    """sha256 hex of a file, None when it is missing."""

    def command(self, path: str) -> str:
        return f"sha256sum {quote(path)} 2>/dev/null | cut -d' ' -f1; true"

    def process(self, output):
        return output[0].strip() if output and output[0].strip() else None

    def default(self):
        return None

"""Facts for the slice network's firewall: the rules it holds now, and the resolvers the
Docker engine forwards the slices' DNS queries to."""

from __future__ import annotations

import ipaddress

from pyinfra.api import FactBase

from sliceops.shell import quote


class FirewallRules(FactBase):
    """The `iptables -S` lines (`-A ...`) of an instance's two chains and of the jumps to them
    from INPUT and DOCKER-USER, in order; [] when none exist (or iptables is not installed)."""

    def command(self, input_chain: str, forward_chain: str) -> str:
        i, f = quote(input_chain), quote(forward_chain)
        return (
            "command -v iptables >/dev/null || exit 0; "
            f"iptables -w -S {i} 2>/dev/null; iptables -w -S {f} 2>/dev/null; "
            f"iptables -w -S INPUT 2>/dev/null | grep -e ' -j '{i}'$'; "
            f"iptables -w -S DOCKER-USER 2>/dev/null | grep -e ' -j '{f}'$'; true"
        )

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> list[str]:
        return [line.strip() for line in lines if line.startswith("-A ")]

    def default(self):
        return []


class Nameservers(FactBase):
    """IPv4 resolvers the engine's embedded DNS forwards to: /etc/resolv.conf's, or
    systemd-resolved's upstream list when the former only names its stub (as dockerd does)."""

    command = (
        "cat /etc/resolv.conf 2>/dev/null; "
        "if grep -q '^nameserver 127.0.0.53' /etc/resolv.conf 2>/dev/null; then "
        "cat /run/systemd/resolve/resolv.conf 2>/dev/null; fi; true"
    )

    def process(self, output):
        return self.parse(output)

    @staticmethod
    def parse(lines: list[str]) -> list[str]:
        found: list[str] = []
        for line in lines:
            words = line.split()
            if len(words) < 2 or words[0] != "nameserver":
                continue
            try:
                address = ipaddress.ip_address(words[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback and str(address) not in found:
                found.append(str(address))
        return found

    def default(self):
        return []

"""The slice network's firewall: slices reach PostgreSQL on the bridge's gateway address (or,
on a slice host of a fleet, on the database host's address and port) and nothing else on
the host, no other private, link-local or shared address anywhere, and the internet only
when `docker.egress` is `allow`.

Two chains per instance hold the rules, jumped to for the slice subnet's traffic only:
`SLICEOPS-IN-<instance>` from INPUT (to the host itself) and `SLICEOPS-FW-<instance>` from
DOCKER-USER (forwarded; the chain the engine evaluates before its own rules and never
flushes). The rules are written in `iptables -S`'s own spelling, so the fact's lines and the
desired lines compare as text. One script, `/etc/sliceops/<instance>/firewall.sh`, applies
them (atomically, with iptables-restore --noflush) for the deploy and again at boot before
the engine starts any container.
"""

from __future__ import annotations

import ipaddress
import re

from pyinfra import host
from pyinfra.api import StringCommand, operation

from sliceops.facts.firewall import FirewallRules
from sliceops.inventory import Inventory
from sliceops.shell import quote

# Never reachable from a slice, whatever docker.egress says: RFC 1918, shared address space
# (RFC 6598), link-local (cloud metadata services live there), benchmarking, "this network",
# multicast and reserved.
BLOCKED_RANGES = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
)
EGRESS = ("allow", "deny")


def resolvers_to_allow(nameservers: list[str]) -> list[str]:
    """The engine forwards the slices' DNS queries from inside their network namespace: the
    host's resolvers within a blocked range must stay reachable on port 53."""
    blocked = [ipaddress.ip_network(r) for r in BLOCKED_RANGES]
    return [ns for ns in nameservers if any(ipaddress.ip_address(ns) in net for net in blocked)]


# What iptables takes as a chain name; anything else (a space, a newline) would split the
# rules' words or end the script's here-document.
_CHAIN = re.compile(r"[A-Za-z0-9_-]{1,28}")


def chain_rules(inv: Inventory, nameservers: list[str], database: str | None = None) -> dict[str, list[str]]:
    """The rules of each of the instance's chains, in `iptables -S` spelling, in order.
    `database`: the database host's address when this slice host is another machine (the
    slices' one way out into the private ranges: PostgreSQL's port there, nothing else)."""
    i, f = inv.firewall_input_chain, inv.firewall_forward_chain
    for chain in (i, f):
        if not _CHAIN.fullmatch(chain):
            raise ValueError(f"not an iptables chain name: {chain!r}")
    gateway = f"{inv.docker.gateway_address}/32"
    inbound = [
        f"-A {i} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",  # answers to the host's own requests
        f"-A {i} -d {gateway} -p tcp -m tcp --dport {inv.postgres.port} -j ACCEPT",
        f"-A {i} -j DROP",
    ]
    forward = [f"-A {f} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    if database is not None:
        address = ipaddress.ip_address(database)  # the model's checked address, spelled as iptables does
        forward.append(f"-A {f} -d {address}/32 -p tcp -m tcp --dport {int(inv.postgres.port)} -j RETURN")
    if inv.docker.egress == "allow":
        for ns in resolvers_to_allow(nameservers):
            forward += [f"-A {f} -d {ns}/32 -p {proto} -m {proto} --dport 53 -j RETURN" for proto in ("udp", "tcp")]
        forward += [f"-A {f} -d {net} -j DROP" for net in BLOCKED_RANGES]
    else:
        forward.append(f"-A {f} -j DROP")
    return {i: inbound, f: forward}


def hooks(inv: Inventory) -> list[str]:
    """The jumps into the instance's chains, for traffic from its slice subnet only."""
    return [
        f"-A INPUT -s {inv.docker.subnet} -j {inv.firewall_input_chain}",
        f"-A DOCKER-USER -s {inv.docker.subnet} -j {inv.firewall_forward_chain}",
    ]


def desired(inv: Inventory, nameservers: list[str], database: str | None = None) -> list[str]:
    """Every line the `FirewallRules` fact must read back, in its order."""
    rules = chain_rules(inv, nameservers, database)
    return [*rules[inv.firewall_input_chain], *rules[inv.firewall_forward_chain], *hooks(inv)]


def apply_script(inv: Inventory, nameservers: list[str], database: str | None = None) -> str:
    """The root-only script that puts the rules in place: idempotent, safe to run at boot
    before the engine (it creates DOCKER-USER, which the engine then keeps)."""
    rules = chain_rules(inv, nameservers, database)
    q = quote
    chains = list(rules)
    restore = ["*filter", *(f":{c} - [0:0]" for c in chains), *(r for c in chains for r in rules[c]), "COMMIT"]
    lines = [
        "#!/bin/sh",
        "# The slice network firewall of one sliceops instance: rendered by the deploy, do not edit.",
        "# Run by the deploy and at boot (before the Docker engine) by the instance's firewall unit.",
        "set -ef  # -f: the rule words split below are never globbed",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        *(f"iptables -w -N {q(c)} 2>/dev/null || true" for c in [*chains, "DOCKER-USER"]),
        "# One transaction: each chain is flushed and refilled at once, never seen empty.",
        "iptables-restore -w --noflush <<'RULES'",
        *restore,
        "RULES",
    ]
    lines += [
        "# hook CHAIN TARGET RULE...: exactly one jump CHAIN -> TARGET, this one, first in CHAIN;",
        "# a jump left from an older subnet goes.",
        "hook() {",
        '    chain=$1; target=$2; shift 2',
        '    iptables -w -S "$chain" | grep -e " -j $target\\$" | grep -vxF -- "-A $chain $*" | sed "s/^-A /-D /" |',
        "        while read -r rule; do iptables -w $rule; done",
        '    iptables -w -C "$chain" "$@" 2>/dev/null || iptables -w -I "$chain" 1 "$@"',
        '    while [ "$(iptables -w -S "$chain" | grep -cxF -- "-A $chain $*" || true)" -gt 1 ]; do',
        '        iptables -w -D "$chain" "$@"',
        "    done",
        "}",
    ]
    for line in hooks(inv):
        words = line.split()  # -A CHAIN -s SUBNET -j TARGET
        lines.append(" ".join(["hook", q(words[1]), q(words[-1]), *(q(w) for w in words[2:])]))
    return "\n".join(lines) + "\n"


@operation(is_idempotent=True)
def rules_applied(inv: Inventory, nameservers: list[str], script_path: str, database: str | None = None):
    """The instance's rules as `desired()` says, applied by the script when the host differs."""
    want = desired(inv, nameservers, database)
    have = host.get_fact(FirewallRules, input_chain=inv.firewall_input_chain,
                         forward_chain=inv.firewall_forward_chain)
    if have == want:
        host.noop(f"slice network {inv.docker.subnet}: PostgreSQL only on the host, egress {inv.docker.egress}")
        return
    yield StringCommand("sh", script_path)

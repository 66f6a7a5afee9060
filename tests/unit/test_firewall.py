"""The slice network firewall's rules as data: what each inventory asks for, in `iptables -S`
spelling (so the fact reads back exactly these lines), and the script that applies them."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from sliceops.facts.firewall import FirewallRules, Nameservers
from sliceops.inventory import load
from sliceops.operations import firewall


def inventory(tmp_path, **docker):
    path = tmp_path / f"inv-{len(list(tmp_path.iterdir()))}.yaml"
    data = {"target": "@local", "instance": "blue", "postgres": {"port": 5460},
            "docker": {"subnet": "172.30.60.0/24", **docker}, "slices": [{"id": 1}]}
    path.write_text(yaml.safe_dump(data))
    return load(path)


def test_slices_reach_postgres_on_the_gateway_and_nothing_else_on_the_host(tmp_path):
    rules = firewall.chain_rules(inventory(tmp_path), [])
    assert rules["SLICEOPS-IN-blue"] == [
        "-A SLICEOPS-IN-blue -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A SLICEOPS-IN-blue -d 172.30.60.1/32 -p tcp -m tcp --dport 5460 -j ACCEPT",
        "-A SLICEOPS-IN-blue -j DROP",
    ]


def test_egress_allow_drops_every_private_range_and_lets_the_rest_through(tmp_path):
    forward = firewall.chain_rules(inventory(tmp_path), [])["SLICEOPS-FW-blue"]
    assert forward[0] == "-A SLICEOPS-FW-blue -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    dropped = [line.split()[3] for line in forward if line.endswith("-j DROP")]
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"):
        assert net in dropped
    assert not any(line.endswith(" -j DROP") and " -d " not in line for line in forward)  # no catch-all


def test_egress_deny_drops_everything_not_answering_a_request(tmp_path):
    forward = firewall.chain_rules(inventory(tmp_path, egress="deny"), ["10.255.255.53"])["SLICEOPS-FW-blue"]
    assert forward == ["-A SLICEOPS-FW-blue -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
                       "-A SLICEOPS-FW-blue -j DROP"]


def test_a_private_resolver_stays_reachable_on_port_53_only(tmp_path):
    forward = firewall.chain_rules(inventory(tmp_path), ["10.255.255.53", "1.1.1.1"])["SLICEOPS-FW-blue"]
    assert forward[1:3] == ["-A SLICEOPS-FW-blue -d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN",
                            "-A SLICEOPS-FW-blue -d 10.255.255.53/32 -p tcp -m tcp --dport 53 -j RETURN"]
    assert not any("1.1.1.1" in line for line in forward)  # public: allowed anyway


def test_hooks_catch_the_slice_subnet_only(tmp_path):
    assert firewall.hooks(inventory(tmp_path)) == [
        "-A INPUT -s 172.30.60.0/24 -j SLICEOPS-IN-blue",
        "-A DOCKER-USER -s 172.30.60.0/24 -j SLICEOPS-FW-blue",
    ]


def test_chain_names_fit_iptables_for_the_longest_instance(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({"target": "@local", "instance": "a" * 16, "slices": [{"id": 1}]}))
    inv = load(path)
    assert max(len(inv.firewall_input_chain), len(inv.firewall_forward_chain)) <= 28


def test_the_script_is_valid_sh_and_restores_exactly_the_desired_rules(tmp_path):
    inv = inventory(tmp_path)
    text = firewall.apply_script(inv, ["10.0.0.2"])
    script = tmp_path / "fw.sh"
    script.write_text(text)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    restore = text.split("<<'RULES'\n", 1)[1].split("RULES\n", 1)[0].splitlines()
    assert restore[0] == "*filter" and restore[-1] == "COMMIT"
    assert [line for line in restore if line.startswith("-A ")] == firewall.desired(inv, ["10.0.0.2"])[:-2]
    assert "hook INPUT SLICEOPS-IN-blue -s 172.30.60.0/24 -j SLICEOPS-IN-blue" in text
    assert "hook DOCKER-USER SLICEOPS-FW-blue -s 172.30.60.0/24 -j SLICEOPS-FW-blue" in text


def test_the_fact_keeps_rules_and_drops_chain_lines():
    lines = ["-N SLICEOPS-IN-blue", "-A SLICEOPS-IN-blue -j DROP", "", "-A INPUT -s 172.30.60.0/24 -j SLICEOPS-IN-blue"]
    assert FirewallRules.parse(lines) == ["-A SLICEOPS-IN-blue -j DROP", "-A INPUT -s 172.30.60.0/24 -j SLICEOPS-IN-blue"]


@pytest.mark.parametrize(("text", "expected"), [
    ("nameserver 10.255.255.53\n", ["10.255.255.53"]),
    ("# generated\nnameserver 127.0.0.53\noptions edns0\nnameserver 127.0.0.53\nnameserver 192.168.1.1\n"
     "nameserver 192.168.1.1\nnameserver fe80::1\nnameserver bogus\n", ["192.168.1.1"]),
])
def test_nameservers_are_ipv4_and_not_loopback(text, expected):
    assert Nameservers.parse(text.splitlines()) == expected


def test_only_resolvers_in_blocked_ranges_need_an_exception():
    assert firewall.resolvers_to_allow(["10.255.255.53", "8.8.8.8", "169.254.169.253"]) == \
        ["10.255.255.53", "169.254.169.253"]


def test_egress_other_than_allow_or_deny_is_refused(tmp_path):
    from sliceops.errors import InventoryError

    with pytest.raises(InventoryError, match="docker.egress"):
        inventory(tmp_path, egress="maybe")


def _render(name: str, **variables) -> str:
    import jinja2

    from sliceops.paths import TEMPLATES

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES / "firewall")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(name).render(**{
        "instance": "blue", "unit": "sliceops-firewall-blue", "script_path": "/etc/sliceops/blue/firewall.sh",
        "egress": "allow", "input_chain": "SLICEOPS-IN-blue", **variables})


def test_the_systemd_unit_runs_the_script_before_the_engine():
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(_render("sliceops-firewall.service.j2"))
    assert "docker.service" in parser["Unit"]["Before"].split()
    assert "docker.service" in parser["Install"]["WantedBy"].split()
    assert parser["Service"]["ExecStart"] == "/bin/sh /etc/sliceops/blue/firewall.sh"
    assert (parser["Service"]["Type"], parser["Service"]["RemainAfterExit"]) == ("oneshot", "yes")


def test_the_init_script_starts_before_the_engine_and_never_opens_up(tmp_path):
    text = _render("sliceops-firewall.init.j2")
    assert "# X-Start-Before:    sliceops-docker docker" in text
    path = tmp_path / "init"
    path.write_text(text)
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0
    # `stop` leaves the rules in place; an unknown verb is LSB's 2.
    assert subprocess.run(["sh", str(path), "stop"]).returncode == 0
    assert subprocess.run(["sh", str(path), "bogus"], capture_output=True).returncode == 2

"""The three-host fleet (issue 14, "Measured"): (a) a from-scratch converge of the fleet with
pyinfra's host parallelism against the sum of converging each host alone, and (b) the fleet's
no-op deploy against a single host's no-op.

The hosts are tests/e2e/fix_fleet.py's (db, app1, app2: systemd host containers on a network of
their own, each slice host with its own dockerd), booted afresh for every from-scratch converge
(boot_fleet; the boot, docker.io install and image load are not timed, they are the bed).

(a) "Each host alone" cannot be a deploy of one host: a slice host's containers need the
database host's roles and databases, and the database host's roles need the verifiers the
slice hosts make (deploy.py). So the baseline is the same deploy of the same inventory on a
fresh fleet with `-- --parallel 1`: pyinfra's pool of one connects, gathers facts and runs
each operation on one host after the other, in the same order; its wall time is the sum of
each host's share of the work, and the difference to the default (one greenlet per host) is
what running hosts in parallel gains. Rounds interleave the two (order alternating).

(b) After the first parallel converge, a single-host instance (`target:` app2 over SSH, its own
PostgreSQL, the same three slices) is converged beside the fleet on app2, then no-op deploys
alternate: the fleet (3 hosts), the single host.

    flock /tmp/sliceops-itest.lock .venv/bin/python bench/fleet_converge.py [--runs 3] [--noops 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from _common import Figure, append_results, command_line, deploy_timed, slowest, table

from tests.e2e.fix_fleet import boot_fleet, remove_fleet

SLICES = [{"id": 1, "host": "app1"}, {"id": 2, "host": "app2"}, {"id": 3, "host": "app1"}]
# The same settings as tests/e2e/test_fleet_converge.py (no disk quotas: no loop devices in the hosts).
FLEET = dict(postgres={"port": 5470}, docker={"subnet": "172.30.70.0/24"},
             slice_defaults={"port_base": 7401, "disk": False}, monitor={"interval": 10})
SOLO = dict(instance="fleetsolo", postgres={"port": 5471}, docker={"subnet": "172.30.71.0/24"},
            slice_defaults={"port_base": 7501, "disk": False}, monitor={"interval": 10})
MODES = {"parallel": (), "one host at a time": ("--parallel", "1")}


def load3() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def solo_inventory(fleet, path: Path) -> Path:
    """A `target:` file: app2 alone, database host and slice host at once."""
    app2 = fleet.hosts["app2"]
    data = {"target": app2.ssh_target, "ssh_key": str(fleet.key_path),
            "ssh_known_hosts": str(fleet.known_hosts_path), **SOLO,
            "slices": [{"id": s["id"]} for s in SLICES]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def say(log: list[str], line: str) -> None:
    log.append(line)
    print(line, flush=True)


def noops(fleet, inventory: Path, work: Path, runs: int, noop: dict, solo_scratch: Figure, log: list[str]) -> None:
    """(b): the single host converged beside the converged fleet, then no-ops alternating."""
    solo = solo_inventory(fleet, work / "solo.yaml")
    before = load3()
    first = deploy_timed(solo, timeout=3000)
    after = load3()
    if first.returncode != 0:
        raise SystemExit(f"single-host converge failed ({first.returncode}):\n{first.output[-5000:]}")
    solo_scratch.add(first.wall)
    say(log, f"single host from scratch: {first.wall:.1f} s, load before {before}, after {after}")
    for path in (inventory, solo):  # one settling run each, untimed
        deploy_timed(path, timeout=900)
    for i in range(runs):
        for which, path in (("fleet", inventory), ("solo", solo)):
            before = load3()
            result = deploy_timed(path, timeout=900)
            after = load3()
            if result.returncode != 0 or result.totals["changed"]:
                raise SystemExit(f"{which} no-op changed {result.changed_ops} or failed ({result.returncode}):\n"
                                 f"{result.output[-4000:]}")
            noop[which].add(result.wall)
            noop[which].note = f"{result.totals['ops']} pyinfra ops, none changed"
            say(log, f"no-op {i + 1}, {which}: {result.wall:.2f} s, load before {before}, after {after}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="from-scratch converges per mode")
    ap.add_argument("--noops", type=int, default=3, help="no-op deploys of each (fleet, single host)")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sliceops-bench-fleet-"))
    scratch = {mode: Figure(f"from-scratch converge, 3 hosts, 3 slices: {mode}", unit="s") for mode in MODES}
    noop = {"fleet": Figure("no-op deploy, fleet (db + app1 + app2, 3 slices)", unit="s"),
            "solo": Figure("no-op deploy, one host (app2 as `target:`, 3 slices)", unit="s")}
    solo_scratch = Figure("from-scratch converge, one host (app2 as `target:`, 3 slices; beside the fleet)", unit="s")
    log: list[str] = []
    beds: list[str] = []
    steps: dict[str, list[list[tuple[str, float]]]] = {mode: [] for mode in MODES}
    fleet = None
    try:
        for r in range(args.runs):
            # Interleaved, order alternating; the first round starts with the parallel fleet (b) runs on.
            order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
            for mode in order:
                fleet = boot_fleet()
                beds.append(f"boot {fleet.setup_seconds['boot']:.0f} s, engines {fleet.setup_seconds['engines']:.0f} s")
                inventory = fleet.write_inventory(work / "fleet.yaml", SLICES, **FLEET)
                before = load3()
                result = deploy_timed(inventory, timeout=3000, pyinfra_args=MODES[mode])
                after = load3()
                if result.returncode != 0:
                    raise SystemExit(f"{mode} converge failed ({result.returncode}):\n{result.output[-5000:]}")
                scratch[mode].add(result.wall)
                steps[mode].append(result.steps)
                say(log, f"round {r + 1}, {mode}: {result.wall:.1f} s (controller CPU {result.cpu:.1f} s, "
                         f"{result.totals['changed']} of {result.totals['ops']} ops changed), "
                         f"load before {before}, after {after}")
                if r == 0 and mode == "parallel":
                    noops(fleet, inventory, work, args.noops, noop, solo_scratch, log)
                remove_fleet(fleet)
                fleet = None
    finally:
        if fleet is not None:
            remove_fleet(fleet)
        shutil.rmtree(work, ignore_errors=True)
    par, ser = scratch["parallel"], scratch["one host at a time"]
    for mode, fig in scratch.items():
        fig.note = "slowest steps (last run): " + slowest(steps[mode][-1], 4)
    ratio = Figure("from scratch: parallel / one host at a time", unit="x")
    ratio.add(par.median / ser.median)
    noop_ratio = Figure("no-op: fleet / one host", unit="x")
    noop_ratio.add(noop["fleet"].median / noop["solo"].median)
    figures = [par, ser, ratio, solo_scratch, noop["fleet"], noop["solo"], noop_ratio]
    print()
    for f in figures:
        print(f.line())
    body = [
        "tests/e2e/fix_fleet.py's three hosts (db, app1, app2; own network namespaces, each slice host its "
        "own dockerd), booted afresh for every from-scratch converge (bed: " + "; ".join(beds) + ", not timed). "
        "The inventory is tests/e2e/test_fleet_converge.py's (3 slices: 1 and 3 on app1, 2 on app2). "
        "'one host at a time' is the same deploy with `-- --parallel 1` (pyinfra's pool of one: each "
        "operation on one host after the other, same order): the sum of each host's share, which cannot "
        "be deployed alone (slice hosts need the database host's roles, and it needs their verifiers). "
        "Modes interleaved, order alternating per round. The single host is app2 of the first parallel "
        "fleet as a `target:` file (own PostgreSQL, same 3 slices), no-ops alternating with the fleet's "
        "after one settling run each." + (f" {args.note}" if args.note else ""),
        "", table(figures), "",
        "Load average (1, 5, 15 min) before and after each run:", "",
    ] + [f"- {line}" for line in log]
    append_results("fleet_converge", command_line(), "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())

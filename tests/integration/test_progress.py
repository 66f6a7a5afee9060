"""Long steps show progress while they run (issue 15): a real first deploy of 12 slices with
its output piped, as a log would take it. Every long step prints how far it has got, in
order, ending at its total, at most a line per tenth (not one per slice); the containers'
lines arrive spread over the step, not all at its end. What the volume, databases and
containers steps did is one line each, not one per slice."""

from __future__ import annotations

import os
import re
import subprocess
import time

from tests.fix_deploy import ROOT, SLICEOPS

INSTANCE = "scaleprog1"
N = 12
STEPS = {  # label: the step's total for a first deploy of N slices
    "slice volume": N,  # a disk quota each
    "roles and credentials": N + 2,  # the gateway's, the slice owner's, one per slice
    "databases": N,
    "migrations": N + 1,  # the gateway database too
    "gateway rows": N,
    "slice containers": N,
}
_PROGRESS = re.compile(r"^    \[@local\] (.+): (\d+)/(\d+) \((\S+)\)$")


def test_a_piped_deploy_shows_each_long_steps_progress_as_it_runs(make_inventory):
    path = make_inventory(
        INSTANCE, [{"id": i} for i in range(1, N + 1)],
        postgres={"port": 5641}, docker={"subnet": "172.30.157.0/24"},
        slice_defaults={"port_base": 43701, "disk": "8m", "memory": "64m"},
    )
    env = dict(os.environ, SLICEOPS_INVENTORY=str(path), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(SLICEOPS + ["deploy", "--inventory", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start, lines = time.monotonic(), []
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line.rstrip("\n")))
    assert proc.wait(timeout=900) == 0, "\n".join(text for _, text in lines[-60:])
    seen: dict[str, list[tuple[float, int, int]]] = {}
    for at, text in lines:
        m = _PROGRESS.match(text)
        if m and m[1] in STEPS:
            seen.setdefault(m[1], []).append((at, int(m[2]), int(m[3])))
    assert set(seen) == set(STEPS), "\n".join(text for _, text in lines)
    for label, total in STEPS.items():
        done = [d for _, d, _ in seen[label]]
        assert {t for _, _, t in seen[label]} == {total}
        assert done == sorted(set(done)) and done[-1] == total, (label, done)
        assert len(done) <= 11, f"{label}: {len(done)} lines for {total} slices (at most one per tenth)"
    # Shown as the containers start, not relayed once the step is over.
    times = [at for at, _, _ in seen["slice containers"]]
    assert times[-1] - times[0] > 1.0, times
    assert not any("sliceops-progress" in text for _, text in lines)
    said = [text for _, text in lines if text.startswith("    [@local] ")]  # not "--> Starting operation"
    quotas = [text for text in said if "disk quota" in text]
    assert quotas == [f"    [@local] sliceops: disk quotas set for {N} slices (1, 2, 3, 4, 5 and {N - 5} more): 8m"]
    created = [text for text in said if " created " in text and "wa_slice_" in text]
    assert len(created) == 1 and f"created {N} slice databases (wa_slice_1, " in created[0], created
    containers = [text for text in said if "sliceops: created" in text and "slice containers" in text]
    assert len(containers) == 1 and f"created {N} slice containers (" in containers[0], containers

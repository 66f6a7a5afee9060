"""The report's HTML page: one file with inline CSS and no script, the charts as PNG files
beside it (relative links), so it opens from disk, offline, in any browser."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np

from sliceops.reporting.query import SliceSeries, Telemetry


@dataclass(frozen=True)
class SliceSummary:
    """One row of the page's table: the window's figures of one slice."""

    id: int
    status: str
    peak_memory_pct: float | None
    mean_cpu: float | None
    last_disk: float | None
    disk_quota: int | None
    last_state: str
    connected_pct: float | None

    @property
    def hot(self) -> bool:
        return self.peak_memory_pct is not None and self.peak_memory_pct >= 90


def _finite(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)] if len(values) else values


def summarize(s: SliceSeries, status: str) -> SliceSummary:
    rss, cpu, disk = _finite(s.rss), _finite(s.cpu), _finite(s.disk)
    known = [st for st in s.states if st]
    return SliceSummary(
        id=s.id,
        status=status,
        peak_memory_pct=round(100.0 * float(rss.max()) / s.memory_limit, 1) if len(rss) and s.memory_limit else None,
        mean_cpu=round(float(cpu.mean()), 1) if len(cpu) else None,
        last_disk=float(disk[-1]) if len(disk) else None,
        disk_quota=s.disk_quota,
        last_state=known[-1] if known else "",
        connected_pct=round(100.0 * sum(st == "CONNECTED" for st in known) / len(known), 1) if known else None,
    )


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def _link(sid: int, slice_images: dict[int, str]) -> str:
    return f'<a href="#slice-{sid}">{sid}</a>' if sid in slice_images else str(sid)


def _pct(p: float | None) -> str:
    return "-" if p is None else f"{p:g} %"


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: right; }
th:nth-child(2), td:nth-child(2), th:nth-child(6), td:nth-child(6) { text-align: left; }
tr.hot td { background: #fde0dc; }
nav a { margin-right: 1em; }
"""


def render(t: Telemetry, summaries: list[SliceSummary], images: dict[str, str], slice_images: dict[int, str],
           tz: tzinfo, tz_name: str, generated: datetime) -> str:
    """The page; `images` maps the fleet/server chart names to their file names."""
    esc = html.escape

    def when(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M")

    hot = sum(s.hot for s in summaries)
    rows = "\n".join(
        f'<tr{" class=hot" if s.hot else ""}><td>{_link(s.id, slice_images)}</td><td>{esc(s.status)}</td>'
        f"<td>{_pct(s.peak_memory_pct)}</td><td>{_pct(s.mean_cpu)}</td>"
        f"<td>{_size(s.last_disk)} / {_size(s.disk_quota)}</td><td>{esc(s.last_state) or '-'}</td>"
        f"<td>{_pct(s.connected_pct)}</td></tr>"
        for s in summaries
    )
    figures = "\n".join(
        f'<h2 id="{key}">{esc(title)}</h2>\n<img src="{esc(images[key])}" alt="{esc(title)}">'
        for key, title in (
            ("fleet-memory", "Fleet: memory, % of each slice's limit"),
            ("fleet-whatsapp", "Fleet: WhatsApp state"),
            ("fleet-cpu", "Fleet: CPU, % of each slice's limit"),
            ("fleet-disk", "Fleet: disk"),
            ("server", "Server: RAM, CPU, disk"),
        )
        if key in images
    )
    shown = f"{len(slice_images)} of {len(summaries)} slices" if len(slice_images) < len(summaries) else "every slice"
    per_slice = f'<h2 id="detail">Per slice</h2>\n<p class="meta">Detailed charts for {shown}'
    if len(slice_images) < len(summaries):
        per_slice += " (the highest peak memory share first; name others with --slices)"
    per_slice += ".</p>\n" + "\n".join(
        f'<h3 id="slice-{sid}">slice {sid}</h3>\n<img loading="lazy" src="{esc(name)}" alt="slice {sid}: memory, CPU, disk">'
        for sid, name in sorted(slice_images.items())
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sliceops report: {esc(t.instance)} on {esc(t.target)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>sliceops report: instance {esc(t.instance)} on {esc(t.target)}</h1>
<p class="meta">{when(t.start)} to {when(t.end)} ({esc(tz_name)}), buckets of {t.step // 60} min;
{len(summaries)} slices, {hot} at 90 % of their memory limit or above; generated {esc(generated.strftime("%Y-%m-%d %H:%M %Z"))}.</p>
<nav><a href="#fleet-memory">memory</a><a href="#fleet-whatsapp">WhatsApp</a><a href="#fleet-cpu">CPU</a><a href="#fleet-disk">disk</a><a href="#server">server</a><a href="#slices">slices</a></nav>
{figures}
<h2 id="slices">Slices</h2>
<table>
<thead><tr><th>slice</th><th>status</th><th>peak memory, % of limit</th><th>mean CPU, % of a core</th>
<th>disk / quota (last)</th><th>last WhatsApp state</th><th>connected, % of the time</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{per_slice}
</body>
</html>
"""

"""The report's PNG charts, drawn with matplotlib's Agg backend (no display, no network).

Every time axis is labelled with its time zone and every value axis with its unit. The
fleet charts have one row per slice and stay legible at 200 slices: the figure grows with
the fleet, y labels thin out, and the colour scales are fixed (0-100 % of the limit), so
two reports compare at a glance.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from sliceops.reporting.query import SliceSeries, Telemetry  # noqa: E402

DPI = 100
MISSING = "#d9d9d9"  # no row in the bucket
# Known states keep their colour from one report to the next; a backend's other states
# (OPENING, UNPAIRED, QR_PENDING, ...) take the next free colour of OTHER_STATES.
STATE_COLOURS = {
    "CONNECTED": "#2ca02c",
    "BACKEND_TIMEOUT": "#ff7f0e",
    "BACKEND_ERROR": "#d62728",
    "BACKEND_UNREACHABLE": "#8c1c13",
    "CONTAINER_STOPPED": "#7f7f7f",
    "CONTAINER_MISSING": "#000000",
}
OTHER_STATES = ["#f2c500", "#bcbd22", "#17becf", "#9467bd", "#e377c2", "#8c564b", "#1f77b4", "#aec7e8"]


def _binary(nbytes: float) -> tuple[float, str]:
    """Divisor and unit name for a byte axis whose largest value is nbytes."""
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= 2 * div:
            return div, unit
    return 1, "B"


# Time axes are plain Unix seconds with ticks placed here: matplotlib's date locators cost
# tens of milliseconds per axis per draw, which hundreds of slice charts cannot afford.
_TICK_STEPS = [m * 60 for m in (10, 15, 30)] + [h * 3600 for h in (1, 2, 3, 6, 12, 24, 48, 168)]


def time_ticks(start: float, end: float, tz: tzinfo, most: int = 8) -> tuple[list[float], list[str]]:
    """Tick positions (Unix s) on round local times of tz, and their labels (a date where the day changes)."""
    step = next((s for s in _TICK_STEPS if (end - start) / s <= most), _TICK_STEPS[-1])
    local = datetime.fromtimestamp(start, tz).replace(tzinfo=None)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if step >= 86400:
        tick = midnight.replace(tzinfo=tz)
    else:
        offset = (local - midnight).total_seconds()
        tick = (midnight + timedelta(seconds=offset // step * step)).replace(tzinfo=tz)
    positions, labels, last_day = [], [], None
    while tick.timestamp() <= end:
        at = tick.timestamp()
        if at >= start:
            day = tick.date()
            if step >= 86400:
                labels.append(tick.strftime("%b %d"))
            else:
                labels.append(tick.strftime("%H:%M") if day == last_day else tick.strftime("%b %d\n%H:%M"))
            last_day = day
            positions.append(at)
        # Wall-clock steps (a day is 23 or 25 hours across a DST change).
        tick = (tick.replace(tzinfo=None) + timedelta(seconds=step)).replace(tzinfo=tz)
    return positions, labels


def _time_axis(ax, t: Telemetry, tz: tzinfo, tz_name: str, most: int = 8) -> None:
    positions, labels = time_ticks(t.start, t.end, tz, most)
    ax.set_xticks(positions, labels)
    ax.set_xlim(t.start, t.end)
    ax.set_xlabel(f"time ({tz_name})")


def _grid(t: Telemetry) -> tuple[np.ndarray, list[int]]:
    """Bucket start times of the window and the slice ids, for slices x time matrices."""
    first = (t.start // t.step) * t.step
    edges = np.arange(first, t.end + t.step, t.step, dtype=float)
    return edges, sorted(t.slices)


def _matrix(t: Telemetry, edges: np.ndarray, ids: list[int], values) -> np.ndarray:
    m = np.full((len(ids), len(edges) - 1), np.nan)
    for row, sid in enumerate(ids):
        s = t.slices[sid]
        if not len(s.times):
            continue
        cols = ((s.times - edges[0]) // t.step).astype(int)
        ok = (cols >= 0) & (cols < m.shape[1])
        m[row, cols[ok]] = values(s)[ok]
    return m


def _fleet_figure(n: int, title: str):
    # 6 px per slice row past the first few, at most 20 inches: 200 slices stay one row each.
    height = min(20.0, max(3.5, 2.2 + 0.06 * n))
    fig, ax = plt.subplots(figsize=(12, height), dpi=DPI, layout="constrained")
    ax.set_title(title)
    return fig, ax


def _slice_ticks(ax, ids: list[int]) -> None:
    # A label needs ~14 px; the plot area is about three quarters of the figure's height.
    rows_px = ax.figure.get_figheight() * DPI * 0.75 / max(len(ids), 1)
    step = max(1, int(np.ceil(14 / rows_px)))
    pos = np.arange(0, len(ids), step)
    ax.set_yticks(pos + 0.5, [str(ids[i]) for i in pos])
    ax.set_ylabel("slice id")
    ax.set_ylim(len(ids), 0)  # slice 1 on top


def heatmap(t: Telemetry, path: Path, tz: tzinfo, tz_name: str, *, values, title: str, label: str,
            vmax: float, cmap: str = "YlOrRd") -> None:
    """Slices x time, one colour per bucket: `values(series)` per bucket, scaled 0..vmax."""
    edges, ids = _grid(t)
    m = _matrix(t, edges, ids, values)
    fig, ax = _fleet_figure(len(ids), f"{title} ({t.instance}, {len(ids)} slices; grey: no telemetry)")
    colours = matplotlib.colormaps[cmap].copy()
    colours.set_bad(MISSING)
    mesh = ax.pcolormesh(edges, np.arange(len(ids) + 1), np.ma.masked_invalid(m), cmap=colours, vmin=0,
                         vmax=vmax, shading="flat")
    _time_axis(ax, t, tz, tz_name)
    _slice_ticks(ax, ids)
    bar = fig.colorbar(mesh, ax=ax, pad=0.01, aspect=40)
    bar.set_label(label)
    fig.savefig(path)
    plt.close(fig)


def _share(used: np.ndarray, limit: float | None) -> np.ndarray:
    return 100.0 * used / limit if limit else np.full(len(used), np.nan)


def memory_heatmap(t: Telemetry, path: Path, tz: tzinfo, tz_name: str) -> None:
    """Which tenants run hot: memory as % of each slice's limit."""
    heatmap(t, path, tz, tz_name, values=lambda s: _share(s.rss, s.memory_limit),
            title="Memory, % of each slice's limit", label="working set, % of limit", vmax=100)


def cpu_heatmap(t: Telemetry, path: Path, tz: tzinfo, tz_name: str, cpu_limits: dict[int, float]) -> None:
    heatmap(t, path, tz, tz_name, values=lambda s: _share(s.cpu, 100 * cpu_limits.get(s.id, 0)),
            title="CPU, % of each slice's limit", label="CPU, % of the cpus limit", vmax=100, cmap="Blues")


def disk_heatmap(t: Telemetry, path: Path, tz: tzinfo, tz_name: str) -> None:
    """Disk as % of each slice's quota; in bytes (largest slice = top of the scale) while slices have none."""
    if any(s.disk_quota for s in t.slices.values()):
        heatmap(t, path, tz, tz_name, values=lambda s: _share(s.disk, s.disk_quota),
                title="Disk, % of each slice's quota", label="data directory, % of quota", vmax=100, cmap="Purples")
        return
    top = max([_top(s.disk, 0) for s in t.slices.values()] or [0])
    div, unit = _binary(top)
    heatmap(t, path, tz, tz_name, values=lambda s: s.disk / div, title="Disk used (no quotas set)",
            label=f"data directory ({unit})", vmax=max(top / div, 1), cmap="Purples")


def state_colours(states: set[str]) -> dict[str, str]:
    colours = {s: c for s, c in STATE_COLOURS.items() if s in states}
    others = sorted(states - set(STATE_COLOURS) - {""})
    for i, s in enumerate(others):
        colours[s] = OTHER_STATES[i % len(OTHER_STATES)]
    return colours


def whatsapp_timeline(t: Telemetry, path: Path, tz: tzinfo, tz_name: str) -> None:
    """Slices x time, one coloured band per WhatsApp state (a bucket shows its worst state)."""
    edges, ids = _grid(t)
    seen = {st for s in t.slices.values() for st in s.states if st}
    colours = state_colours(seen)
    order = list(colours)
    index = {s: i for i, s in enumerate(order)}
    m = _matrix(t, edges, ids, lambda s: np.array([index.get(st, np.nan) for st in s.states], dtype=float))
    fig, ax = _fleet_figure(len(ids), f"WhatsApp state ({t.instance}, {len(ids)} slices)")
    cmap = ListedColormap([colours[s] for s in order] or ["#ffffff"])
    cmap.set_bad(MISSING)
    ax.pcolormesh(edges, np.arange(len(ids) + 1), np.ma.masked_invalid(m), cmap=cmap, vmin=-0.5,
                  vmax=max(len(order), 1) - 0.5, shading="flat")
    _time_axis(ax, t, tz, tz_name)
    _slice_ticks(ax, ids)
    handles = [Patch(color=colours[s], label=s) for s in order] + [Patch(color=MISSING, label="no telemetry")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
    fig.savefig(path)
    plt.close(fig)


def server(t: Telemetry, path: Path, tz: tzinfo, tz_name: str) -> None:
    """The server's RAM (and swap), CPU and disk over the window."""
    v = t.server
    x = v.times
    fig, axes = plt.subplots(3, 1, figsize=(12, 8), dpi=DPI, sharex=True, layout="constrained")
    fig.suptitle(f"Server ({t.target}, instance {t.instance})")
    ram, cpu, disk = axes
    div, unit = _binary(np.nanmax(v.ram_total) if len(v.ram_total) else 0)
    ram.plot(x, v.ram_used / div, label="RAM used")
    ram.plot(x, v.ram_total / div, "--", color="black", label="RAM total")
    if len(v.swap_total) and np.nanmax(v.swap_total) > 0:
        ram.plot(x, v.swap_used / div, label="swap used")
    ram.set_ylabel(f"memory ({unit})")
    ram.set_ylim(bottom=0)
    ram.legend(loc="upper left")
    cpu.plot(x, v.cpu, color="tab:red", label="CPU busy")
    cpu.set_ylabel("CPU (% of all cores)")
    cpu.set_ylim(0, 100)
    ddiv, dunit = _binary(np.nanmax(v.disk_total) if len(v.disk_total) else 0)
    disk.plot(x, v.disk_used / ddiv, color="tab:purple", label="disk used")
    disk.plot(x, v.disk_total / ddiv, "--", color="black", label="disk size")
    disk.set_ylabel(f"disk ({dunit})")
    disk.set_ylim(bottom=0)
    disk.legend(loc="upper left")
    for ax in axes:
        ax.grid(alpha=0.3)
        _time_axis(ax, t, tz, tz_name)
    for ax in axes[:2]:
        ax.set_xlabel("")
    fig.savefig(path)
    plt.close(fig)


def _top(values: np.ndarray, floor: float) -> float:
    finite = values[~np.isnan(values)] if len(values) else values
    return max(floor, float(finite.max()) if len(finite) else 0.0)


class SliceCharts:
    """One figure, its lines drawn once and given each slice's data in turn: building or
    clearing axes costs far more than drawing them, and a report may have hundreds."""

    def __init__(self, t: Telemetry, tz: tzinfo, tz_name: str, cpu_limits: dict[int, float]):
        self.cpu_limits = cpu_limits
        # A fixed layout: constrained layout would measure every label again for each slice.
        self.fig, self.axes = plt.subplots(1, 3, figsize=(13, 3.2), dpi=DPI)
        self.fig.subplots_adjust(left=0.06, right=0.99, bottom=0.25, top=0.82, wspace=0.28)
        self.title = self.fig.suptitle("")
        mem, cpu, disk = self.axes
        self.rss, = mem.plot([], [], color="tab:blue", label="working set")
        self.mem_limit = mem.axhline(0, color="tab:red", linestyle="--", label="limit")
        mem.set_title("memory against its limit", fontsize=10)
        self.cpu, = cpu.plot([], [], color="tab:orange", label="CPU")
        self.cpu_limit = cpu.axhline(0, color="tab:red", linestyle="--", label="limit")
        cpu.set_title("CPU", fontsize=10)
        cpu.set_ylabel("CPU (% of one core)")
        self.disk, = disk.plot([], [], color="tab:purple", label="data directory")
        self.quota = disk.axhline(0, color="tab:red", linestyle="--", label="quota")
        self.disk_title = disk.set_title("", fontsize=10)
        for ax in self.axes:
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", fontsize=8)
            _time_axis(ax, t, tz, tz_name, most=4)
        self._quota_in_legend = True

    @staticmethod
    def _show(line, value: float | None, div: float) -> None:
        line.set_visible(bool(value))
        if value:
            line.set_ydata([value / div, value / div])

    def draw(self, s: SliceSeries, path: Path) -> None:
        mem, cpu, disk = self.axes
        self.title.set_text(f"slice {s.id}")
        top = _top(s.rss, s.memory_limit or 0)
        div, unit = _binary(top)
        self.rss.set_data(s.times, s.rss / div)
        self._show(self.mem_limit, s.memory_limit, div)
        mem.set_ylabel(f"memory ({unit})")
        mem.set_ylim(0, max(top / div * 1.08, 1e-9))
        limit = self.cpu_limits.get(s.id)
        self.cpu.set_data(s.times, s.cpu)
        self._show(self.cpu_limit, 100 * limit if limit else None, 1)
        cpu.set_ylim(0, max(_top(s.cpu, 100 * (limit or 0)) * 1.08, 1))
        dtop = _top(s.disk, s.disk_quota or 0)
        ddiv, dunit = _binary(dtop)
        self.disk.set_data(s.times, s.disk / ddiv)
        self._show(self.quota, s.disk_quota, ddiv)
        self.disk_title.set_text("disk against its quota" if s.disk_quota else "disk (no quota set)")
        if bool(s.disk_quota) != self._quota_in_legend:
            self._quota_in_legend = bool(s.disk_quota)
            disk.legend(handles=[self.disk, self.quota] if s.disk_quota else [self.disk], loc="upper left", fontsize=8)
        disk.set_ylabel(f"disk ({dunit})")
        disk.set_ylim(0, max(dtop / ddiv * 1.08, 1))
        self.fig.savefig(path)

    def close(self) -> None:
        plt.close(self.fig)

"""Turn a window of telemetry into the report's files: the fleet and server charts, one
chart per slice, and index.html linking them."""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path

from sliceops.inventory import Inventory
from sliceops.reporting import charts, page
from sliceops.reporting.query import Telemetry

INDEX = "index.html"
# Slices with a detailed chart of their own. Each costs ~0.1-0.2 s of matplotlib; beyond
# this many the heat maps show every slice and the hottest get the detail.
DETAIL_MAX = 24


def detailed(summaries: list[page.SliceSummary]) -> list[int]:
    """Every slice when few; else the DETAIL_MAX with the highest peak memory share."""
    if len(summaries) <= DETAIL_MAX:
        return [s.id for s in summaries]
    hottest = sorted(summaries, key=lambda s: -(s.peak_memory_pct or -1.0))[:DETAIL_MAX]
    return sorted(s.id for s in hottest)


def write(inv: Inventory, t: Telemetry, out: Path, tz: tzinfo, tz_name: str, generated: datetime) -> Path:
    by_id = {s.id: s for s in inv.slices}
    cpu_limits = {s.id: s.cpus for s in inv.slices}
    images = {key: f"{key}.png" for key in ("fleet-memory", "fleet-whatsapp", "fleet-cpu", "fleet-disk", "server")}
    charts.memory_heatmap(t, out / images["fleet-memory"], tz, tz_name)
    charts.whatsapp_timeline(t, out / images["fleet-whatsapp"], tz, tz_name)
    charts.cpu_heatmap(t, out / images["fleet-cpu"], tz, tz_name, cpu_limits)
    charts.disk_heatmap(t, out / images["fleet-disk"], tz, tz_name)
    charts.server(t, out / images["server"], tz, tz_name)
    summaries = [page.summarize(t.slices[sid], by_id[sid].status if sid in by_id else "?") for sid in sorted(t.slices)]
    per_slice = charts.SliceCharts(t, tz, tz_name, cpu_limits)
    slice_images = {}
    try:
        for sid in detailed(summaries):
            series = t.slices[sid]
            name = f"slice-{sid}.png"
            per_slice.draw(series, out / name)
            slice_images[sid] = name
    finally:
        per_slice.close()
    index = out / INDEX
    index.write_text(page.render(t, summaries, images, slice_images, tz, tz_name, generated))
    return index

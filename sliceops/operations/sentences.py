"""How the work an operation computed reads in `sliceops plan`, per slice.

Each function takes what an operation already decided (the roles it will converge, the SQL
it will run, the containers it will recreate) and records it in `sliceops.plan` in words;
the operations call them just before their first command. Nothing here reads the host.
"""

from __future__ import annotations

from sliceops import plan
from sliceops.inventory import DESTROYING, SUSPENDED, Inventory


def roles(inv: Inventory, have: dict, todo: list[str], monitor_role: str | None, limits=()) -> None:
    """`have`: the roles that exist; `monitor_role`: set when the monitor's role is created;
    `limits`: tenant roles whose CONNECTION LIMIT is corrected."""
    tenants = {s.login_role: s for s in inv.kept_slices()}
    for role in todo:
        s = tenants.get(role)
        if s is not None and role not in have:
            plan.for_slice(s.id, "new", "role")
        elif s is not None:
            plan.for_slice(s.id, "credentials restored", f"role {role} and its credentials files")
        else:
            plan.record("postgres", "role and credentials", role)
    if monitor_role:
        plan.record("postgres", "role and credentials", monitor_role)
    for role in limits:
        if role not in todo and role in tenants:
            plan.for_slice(tenants[role].id, "connection limit", f"role {role}: {inv.slice_defaults.db_connections}")


def databases(inv: Inventory, desired, have: dict, sql: list[str]) -> None:
    """`desired`: the database names the deploy keeps; `sql`: the statements it will run."""
    by_db = {s.database: s for s in inv.kept_slices()}
    for db in desired:
        s = by_db.get(db)
        if db not in have:
            if s is not None:
                plan.for_slice(s.id, "new", "database from the template")
            else:
                plan.record("gateway database", "new", db)
        elif any(f'"{db}"' in q for q in sql):
            if s is not None:
                plan.for_slice(s.id, "database access corrected", "owner and CONNECT grants")
            else:
                plan.record("gateway database", "access corrected", "owner and CONNECT grants")


def migrations(inv: Inventory, have: dict, todo) -> None:
    """`todo`: the migration plan, [(database, owner, pending migrations, grants, stamp)]."""
    by_db = {s.database: s for s in inv.kept_slices()}
    for database, _owner, files, _grants, _stamp in todo:
        s = by_db.get(database)
        applied = ", ".join(m.filename for m in files)
        if s is not None and database not in have:
            plan.for_slice(s.id, "new", "database from the template")  # its grants and stamp: part of new
        elif s is not None:
            plan.for_slice(s.id, "migrations", applied or "grants re-checked and stamp written (changed since stamped)")
        else:
            plan.record("gateway database", "migrations", applied or "monitor grants")


def registration(inv: Inventory, rows: dict) -> None:
    """`rows`: gateway.slices as read ({id: {"port", "status", "user_id", "host"}})."""
    for s in inv.slices:
        row = rows.get(s.id)
        if row is None:
            if s.status != DESTROYING:
                plan.for_slice(s.id, "new", "gateway row")
            continue
        wanted = {SUSPENDED: "suspended", DESTROYING: "destroying"}.get(s.status)
        if wanted and row["status"] != wanted:
            plan.for_slice(s.id, wanted, f"gateway row {row['status']} -> {wanted}")
        elif not wanted and row["status"] in ("suspended", "destroying"):
            back = "available" if row["user_id"] is None else "assigned"
            plan.for_slice(s.id, "back in service", f"gateway row {row['status']} -> {back}")
        if row["port"] != s.port:
            plan.for_slice(s.id, "port moved", f"gateway row port {row['port']} -> {s.port}")
        if row.get("host") is None and s.status != DESTROYING:
            plan.for_slice(s.id, "host recorded", f"gateway row host -> {s.host}")


def containers(inv: Inventory, have: dict, todo, wanted: dict[str, dict]) -> None:
    """`todo`: the ContainerPlan; `wanted`: the desired spec (as its label) of each recreated one."""
    for s in inv.slices:
        name = inv.container_name(s.id)
        if name in todo.created:
            # No credentials yet: the slice itself is new (the roles step writes them first).
            if f"{s.login_role}.env" not in have["env_sha256"]:
                plan.for_slice(s.id, "new", f"container on 127.0.0.1:{s.port}")
            else:
                plan.for_slice(s.id, "container created", f"on 127.0.0.1:{s.port}")
        elif name in todo.recreated:
            cur = have["containers"][name]
            changes = ["it was dead"] if cur["state"] == "dead" else spec_changes(cur.get("spec_fields"), wanted[name])
            for change in changes:
                plan.for_slice(s.id, "container recreated", change)
        elif name in todo.started:
            plan.for_slice(s.id, "container started", "it was stopped")
        elif name in todo.stopped:
            plan.for_slice(s.id, "suspended", "container stopped")
    for name in todo.orphans:
        sid = have["containers"][name].get("slice")
        if sid is not None:
            plan.for_slice(sid, "orphan, left intact", changes=False)
        else:
            plan.record(f"container {name}", "orphan, left intact", changes=False)


_WORDS = {
    "memory": "memory", "cpus": "cpus", "pids_limit": "pids", "publish": "published on",
    "health_interval": "health check interval (s)", "network": "network", "volumes": "mounts",
}


def spec_changes(old: dict | None, new: dict) -> list[str]:
    """What differs between a container's recorded spec label and the desired one, in words."""
    if not old:
        return ["spec changed"]  # a container from before specs were recorded
    out = []
    for key in sorted(set(old) | set(new)):
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        if key == "image":
            out.append("image rebuilt" if str(now).startswith("(unbuilt") else
                       f"image {str(was)[7:19]} -> {str(now)[7:19]}")
        elif key == "env_file_sha256":
            out.append("credentials changed")
        elif key in _WORDS:
            out.append(f"{_WORDS[key]} {_show(was)} -> {_show(now)}")
        else:
            out.append(f"{key} changed")
    return out or ["spec changed"]


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)

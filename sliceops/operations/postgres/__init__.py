"""Fleet-level PostgreSQL operations, one resource family per module: `roles`, `databases`
(and the template), `migrations`, `stamps`, `grants`, `registry` (gateway.slices and the
destroy guard). Each operation reads the cluster once (`state.fleet`) and emits one command
for all that differs, or a noop sentence; every script goes through `sliceops.psql`, the one
door to psql, with values quoted by `sliceops.shell`.
"""

import importlib

# Where each planner lives. Loaded on first use (PEP 562): `sliceops status` reads the stamp
# from `stamps` without importing pyinfra, which the operation modules need.
_HOME = {
    "databases_sql": "databases", "desired_databases": "databases", "template_command": "databases",
    "MIGRATION_LOCK": "migrations", "history_problems": "migrations", "migrate_command": "migrations",
    "migration_plan": "migrations", "migration_script": "migrations",
    "assert_destroy_allowed": "registry", "registration_sql": "registry",
    "CREDENTIALS_PY": "roles", "credentials_request": "roles",
    "desired_login_roles": "roles", "roles_command": "roles", "roles_to_converge": "roles",
    "slice_migrations": "stamps", "slice_stamp": "stamps", "stamp": "stamps", "template_stamp": "stamps",
    "fleet": "state", "heredoc": "state",
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


# The planners, for callers and tests; the operations themselves are `<module>.<name>`
# (`roles.roles`, `databases.databases`, `migrations.migrations`, `registry.registration`).
__all__ = sorted(_HOME)

"""Fleet-level PostgreSQL operations, one resource family per module: `roles`, `databases`
(and the template), `migrations`, `stamps`, `grants`, `registry` (gateway.slices and the
destroy guard). Each operation reads the cluster once (`state.fleet`) and emits one command
for all that differs, or a noop sentence; every script goes through `sliceops.psql`, the one
door to psql, with values quoted by `sliceops.shell`.
"""

from sliceops.operations.postgres.databases import databases_sql, desired_databases, template_command
from sliceops.operations.postgres.migrations import (
    MIGRATION_LOCK, history_problems, migrate_command, migration_plan, migration_script,
)
from sliceops.operations.postgres.registry import assert_destroy_allowed, registration_sql
from sliceops.operations.postgres.roles import _SCRAM_PY, desired_login_roles, roles_command, roles_to_converge
from sliceops.operations.postgres.stamps import slice_migrations, slice_stamp, stamp, template_stamp
from sliceops.operations.postgres.state import fleet, heredoc

# The planners, for callers and tests; the operations themselves are `<module>.<name>`
# (`roles.roles`, `databases.databases`, `migrations.migrations`, `registry.registration`).
__all__ = [
    "MIGRATION_LOCK", "_SCRAM_PY", "assert_destroy_allowed", "databases_sql", "desired_databases",
    "desired_login_roles", "fleet", "heredoc", "history_problems", "migrate_command", "migration_plan", "migration_script",
    "registration_sql", "roles_command", "roles_to_converge", "slice_migrations", "slice_stamp", "stamp", "template_command",
    "template_stamp",
]

"""``celery -A config <group>``: one module per command group, shared pieces in :mod:`~workers.ops.cli.common`."""

"""What operators run: dead-letter tools, backfill, event status, metrics, alerts, CLI, Flower."""

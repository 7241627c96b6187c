"""What the benchmark workers run: platform tasks, a stock Celery app, Dramatiq actors."""

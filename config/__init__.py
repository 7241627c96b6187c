"""What the platform is: settings, topology and the Celery app.

``celery -A config worker`` finds :data:`app` here.
"""

from __future__ import annotations

from config.app import create_app

#: The platform's Celery app, configured from the environment.
app = create_app()

__all__ = ["app"]

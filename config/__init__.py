"""What the platform is: settings, topology and the Celery app.

``celery -A config worker`` finds :data:`app` here. A bad setting stops the
process at import with one line naming the variable (exit status 2).
"""

from __future__ import annotations

import sys

from config.app import create_app
from config.settings import SettingsError, load_settings

try:
    #: The platform's Celery app, configured from the environment.
    app = create_app(load_settings())
except SettingsError as error:  # includes a bad subscriptions file
    print(f"configuration error: {error}", file=sys.stderr)
    raise SystemExit(2) from None

__all__ = ["app"]

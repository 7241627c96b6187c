"""``python -m workers.flower_pages``: Flower with the platform pages (see server.py)."""

from __future__ import annotations

import sys

from workers.flower_pages.server import main

sys.exit(main())

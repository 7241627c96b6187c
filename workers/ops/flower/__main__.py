"""``python -m workers.ops.flower``: check the settings, then run Flower with the platform pages."""

from __future__ import annotations

import sys

from workers.ops.flower.launcher import main

sys.exit(main(sys.argv[1:]))

"""Platform pages inside Flower: dead letters, events, and a broker view with every queue.

Added through Flower's and Tornado's own seams, never by editing Flower's files:
:class:`~workers.ops.flower.server.PlatformFlower` is Flower's application
with our handlers added by Tornado's ``add_handlers`` (they take precedence over
Flower's catch-all), and :class:`~workers.ops.flower.loader.PlatformLoader`
is a Tornado template loader that finds our templates first and Flower's
otherwise, adding "Dead letters" and "Events" links to Flower's navigation bar.

``python -m workers.ops.flower.server [flower options]`` runs it (the launcher
``python -m workers.ops.flower`` does, after its safety checks).
"""

from __future__ import annotations

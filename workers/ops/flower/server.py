"""Flower with the platform pages: ``python -m workers.ops.flower.server [flower options]``.

It does what ``celery -A config flower`` does (Flower's own option parsing from
``FLOWER_*`` variables, a config file and the command line; its settings,
logging and banner), with two additions made through supported seams:

- :class:`PlatformFlower` is Flower's Tornado application with the handlers of
  :mod:`workers.ops.flower.dlq_pages`, :mod:`workers.ops.flower.event_pages` and
  :mod:`workers.ops.flower.scale_pages` and :mod:`workers.ops.flower.saga_pages`
  added by ``add_handlers`` (Tornado matches them before Flower's own, so
  ``/broker`` shows every queue);
- the settings' ``template_loader`` is :class:`~workers.ops.flower.loader.PlatformLoader`.

Use ``python -m workers.ops.flower`` to start it: that launcher refuses unsafe
addresses and passes secrets through the environment.
"""

from __future__ import annotations

import atexit
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from flower.app import Flower, rewrite_handler
from flower.command import apply_env_options, apply_options, extract_settings, setup_logging, sigterm_handler
from flower.urls import settings as flower_settings
from tornado.options import options

from workers.ops.flower.dlq_pages import platform_handlers
from workers.ops.flower.event_pages import event_page_handlers
from workers.ops.flower.loader import PlatformLoader
from workers.ops.flower.saga_pages import saga_page_handlers
from workers.ops.flower.scale_pages import scale_page_handlers

logger = logging.getLogger(__name__)


class PlatformFlower(Flower):
    """Flower's application plus the platform's pages (matched before Flower's handlers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("template_loader", PlatformLoader())
        super().__init__(*args, **kwargs)
        handlers = [
            *platform_handlers(),
            *event_page_handlers(),
            *scale_page_handlers(),
            *saga_page_handlers(),
        ]
        if self.options.url_prefix:
            handlers = [rewrite_handler(handler, self.options.url_prefix) for handler in handlers]
        # Tornado puts handlers added later before the application's own rules.
        self.add_handlers(r".*$", handlers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run Flower with the platform pages until SIGTERM.

    Args:
        argv: Flower options (``--port=5555``...), as after ``celery flower``.
    """
    from config import app as celery_app  # the platform's app, built from the environment

    arguments = list(sys.argv[1:] if argv is None else argv)
    apply_env_options()
    apply_options(sys.argv[0], arguments)
    extract_settings()
    setup_logging()
    flower_app = PlatformFlower(capp=celery_app, options=options, **flower_settings)
    atexit.register(flower_app.stop)
    signal.signal(signal.SIGTERM, sigterm_handler)
    port = flower_app.start_http_server()
    logger.info("Flower with platform pages at http://%s:%s/dlq", options.address or "127.0.0.1", port)
    try:
        flower_app.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

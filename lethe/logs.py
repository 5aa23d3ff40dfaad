"""Logging set-up shared by the worker and the CLI."""

from __future__ import annotations

import logging

# These libraries log request URLs, and a SCIM filter in a URL carries the person's identifier.
_URL_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_url_loggers()


def quiet_url_loggers() -> None:
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

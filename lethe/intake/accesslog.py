"""Uvicorn's access log, minus query strings: a SCIM filter in a query holds an identifier."""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"
# uvicorn.access records carry (client, method, path with query, http version, status).
_PATH_ARG = 2


class PathOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > _PATH_ARG and isinstance(args[_PATH_ARG], str):
            record.args = (*args[:_PATH_ARG], args[_PATH_ARG].split("?", 1)[0], *args[_PATH_ARG + 1 :])
        return True


def paths_only() -> None:
    """On the logger itself (not a handler), so every handler, ours or a test's, sees paths only.
    Call it after uvicorn configured logging (uvicorn.Config does)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, PathOnly) for existing in logger.filters):
        logger.addFilter(PathOnly())

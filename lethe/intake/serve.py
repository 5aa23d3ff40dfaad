"""`starter.py serve`: the intake service under uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from lethe.intake.accesslog import paths_only
from lethe.intake.app import build_app
from lethe.intake.credentials import Credentials
from lethe.logs import configure_logging
from lethe.settings import Settings
from lethe.temporal import connect, ensure_search_attributes

logger = logging.getLogger("lethe.intake")


def server(settings: Settings, app: object, host: str | None = None, port: int | None = None) -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host or settings.intake.host,
        port=port or settings.intake.port,
        proxy_headers=False,  # no X-Forwarded-* trust unless a deployment adds it deliberately
        server_header=False,
        lifespan="off",
    )
    paths_only()
    return uvicorn.Server(config)


async def run(settings: Settings) -> int:
    credentials = Credentials.load(settings.intake)  # a missing secret stops start-up, not the first event
    credentials.require_some()
    settings.pepper_bytes()
    client = await connect(settings.temporal)
    await ensure_search_attributes(client)
    configure_logging()
    if credentials.okta_secret is None:
        logger.info("Okta event hooks disabled (intake.okta_secret_env not set)")
    if not credentials.bearer_tokens:
        logger.info("SCIM endpoint refuses everyone (no intake.bearer_tokens_env)")
    app = build_app(settings, client, credentials)
    await server(settings, app).serve()
    return 0

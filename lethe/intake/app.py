"""The intake service as one ASGI app: /events, /okta/events, /scim/v2, /healthz, /openapi.json."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.client import Client

from lethe.intake import events, okta, replay
from lethe.intake.cases import CaseDesk
from lethe.intake.credentials import Credentials
from lethe.intake.errors import Refused, field_of, refused_response
from lethe.intake.models import Event, OktaHook
from lethe.intake.openapi import describe_raw_bodies
from lethe.intake.guards import ASGIApp, BodyLimit, Shield
from lethe.intake.scim_app import build_scim
from lethe.intake.state import Intake
from lethe.ledger import engine_for
from lethe.settings import Settings

DESCRIPTION = """Events in: HR systems and identity providers tell Lethe who left, who asked to be
forgotten, who came back and what is under a legal hold. Authenticate POST /events with an
HMAC-SHA256 signature (X-Lethe-Timestamp, X-Lethe-Signature) or a bearer token. The SCIM 2.0
service provider for IdP provisioning lives under /scim/v2 (not described here; see its
/ServiceProviderConfig, /ResourceTypes and /Schemas)."""


async def _invalid_parameter(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    field = field_of(tuple(first["loc"]))
    return JSONResponse({"error": "invalid", "message": f"{field}: {first['msg']}", "field": field}, status_code=422)


def build_fastapi(intake: Intake) -> FastAPI:
    app = FastAPI(title="Lethe intake", version="1", description=DESCRIPTION)
    app.state.intake = intake
    app.add_exception_handler(Refused, refused_response)
    app.add_exception_handler(RequestValidationError, _invalid_parameter)
    app.include_router(events.router)
    app.include_router(okta.router)

    @app.get("/healthz", tags=["health"], summary="liveness: answers while the process serves")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/scim", build_scim(intake))  # type: ignore[arg-type]
    describe_raw_bodies(app, {("post", "/events"): Event, ("post", "/okta/events"): OktaHook})
    return app


def build_app(settings: Settings, client: Client, credentials: Credentials | None = None) -> ASGIApp:
    """The whole service; every request goes through the body limit and the error shield first."""
    credentials = credentials or Credentials.load(settings.intake)
    ledger = engine_for(settings.ledger.url)
    replay.ensure_tables(ledger)
    intake = Intake(settings=settings, desk=CaseDesk(client, settings), credentials=credentials, ledger=ledger)
    return Shield(BodyLimit(build_fastapi(intake), settings.intake.max_body))  # type: ignore[arg-type]

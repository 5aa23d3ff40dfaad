"""The SCIM 2.0 service provider at /scim/v2, so Okta or Entra ID can provision into Lethe.

The protocol is scim2-server's; Lethe adds the storage (scim_store), bearer-token auth, and
the one thing it cares about: a user set `active: false` (PATCH or PUT) or deleted starts a
leaver case; a user set active again signals `rehire` to a running case. Only Users are served.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    External,
    Filter,
    InvalidValueException,
    Patch,
    PreconditionFailedException,
    Reference,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    UnauthorizedException,
    User,
)
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from scim2_server.storage import AsyncScimStorage, SearchPage
from temporalio.service import RPCError

from lethe.case import Reason
from lethe.intake.cases import CaseDesk, NoCase
from lethe.intake.credentials import Credentials
from lethe.intake.scim_store import SqlUserStorage, identifier_of
from lethe.intake.state import Intake
from lethe.subject import subject_ref

logger = logging.getLogger("lethe.intake")
MAX_RESULTS = 200

# Announce only what is implemented: no bulk, no password changes, no cursors.
CONFIG = ServiceProviderConfig(
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=True),
    etag=ETag(supported=True),
    authentication_schemes=[
        AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name="Bearer token",
            description="A static bearer token from intake.bearer_tokens_env",
            spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"),
            primary=True,
        )
    ],
)


class CaseUnavailable(SCIMException):
    status = 503
    _default_detail = "Lethe cannot reach its workflow engine; nothing was changed, retry later"


class LeaverWatch(AsyncScimStorage):
    """The mirrored users, watched for leavers and returners."""

    def __init__(self, storage: SqlUserStorage, desk: CaseDesk, attribute: str) -> None:
        self.storage = storage
        self.desk = desk
        self.attribute = attribute

    async def get(self, resource_type: ResourceType, resource_id: str, *, response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        return await asyncio.to_thread(self.storage.get, resource_type, resource_id)

    async def search(self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *, position: Any = None) -> SearchPage:
        return await asyncio.to_thread(self.storage.search, resource_types, search_request)

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        # A user created inactive is a future hire, not a leaver: no case.
        self._identifier(resource)
        return await asyncio.to_thread(self.storage.create, resource_type, resource)

    async def update(self, resource_type: ResourceType, resource: Resource[Any], *, expected_version: str | None = None) -> Resource[Any]:
        stored = await self.get(resource_type, cast(str, resource.id))
        was_active, active = cast(User, stored).active, cast(User, resource).active
        self._identifier(resource)
        _check_version(stored, expected_version)
        # The case first: if Temporal is down, the IdP gets a 503 and retries the whole change.
        if active is False and was_active is not False:
            await self._leaver(resource, "deactivated")
        elif was_active is False and active is True:
            await self._returned(resource)
        return await asyncio.to_thread(self.storage.update, resource_type, resource, expected_version=expected_version)

    async def delete(self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None) -> None:
        stored = await self.get(resource_type, resource_id)
        _check_version(stored, expected_version)
        await self._leaver(stored, "deleted")
        await asyncio.to_thread(self.storage.delete, resource_type, resource_id, expected_version=expected_version)

    def _identifier(self, user: Resource[Any]) -> str:
        identifier = identifier_of(user, self.attribute)
        if not identifier or not identifier.strip():
            raise InvalidValueException(detail=f"Lethe keys cases on {self.attribute} (intake.scim_identifier); this user has none")
        return identifier

    async def _leaver(self, user: Resource[Any], how: str) -> None:
        try:
            opened = await self.desk.open(self._identifier(user), Reason.LEAVER)
        except RPCError:
            raise CaseUnavailable from None
        logger.info("scim: user %s %s: %s %s", user.id, how, opened.outcome, opened.workflow_id)

    async def _returned(self, user: Resource[Any]) -> None:
        try:
            case_id = await self.desk.signal(self._identifier(user), "rehire", None)
        except NoCase:
            return
        except RPCError:
            raise CaseUnavailable from None
        logger.info("scim: user %s reactivated: rehire sent to %s", user.id, case_id)


def _check_version(stored: Resource[Any], expected_version: str | None) -> None:
    # Before any case is touched: a stale write must change nothing.
    if expected_version is not None and stored.meta is not None and stored.meta.version != expected_version:
        raise PreconditionFailedException


class IdpFriendlyService(ScimService):
    def patch_response(self, base_url: str, resource: Resource[Any], response_parameters: ResponseParameters[Any]) -> ScimResponse:
        # RFC 7644 allows 204, but Okta expects the user back with 200 after a PATCH.
        return self.resource_response(self.publish(base_url, resource), Context.RESOURCE_REPLACEMENT_RESPONSE, response_parameters)


class ScimEndpoint(ASGIApplication):
    def __init__(self, storage: AsyncScimStorage, provider: ScimProvider, credentials: Credentials) -> None:
        super().__init__(storage, provider, IdpFriendlyService(provider))
        self.credentials = credentials

    def check_auth(self, request: ScimRequest) -> None:
        if not self.credentials.bearer_ok(request.header("Authorization")):
            raise UnauthorizedException

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        # Type and status only: a SCIM error's detail may quote a filter, i.e. an identifier.
        if isinstance(exception, SCIMException):
            logger.info("scim %s %s: %s", request.method, exception.status, type(exception).__name__)
        else:
            logger.error("scim %s: internal error %s", request.method, type(exception).__name__)
        return self.service.error_response(exception)


def build_scim(intake: Intake) -> ScimEndpoint:
    model = User[EnterpriseUser]
    provider = ScimProvider(models=[User, EnterpriseUser], resource_types=[ResourceType.from_resource(model)], config=CONFIG)
    pepper = intake.settings.pepper_bytes()
    storage = SqlUserStorage(intake.ledger, cast(type[Resource[Any]], provider.model_for("User")), lambda value: subject_ref(pepper, value))
    return ScimEndpoint(LeaverWatch(storage, intake.desk, intake.settings.intake.scim_identifier), provider, intake.credentials)

"""The users an IdP provisions into Lethe over SCIM, mirrored in the ledger database.

They hold identifiers (and whatever else the IdP sends), so they are personal data: a user is
removed on SCIM DELETE, and every user carrying a subject's identifier is removed when that
subject's case is certified (purge_mirrored_users). Passwords are never stored.

Searches with `userName`, `emails` or `externalId eq "..."` (what IdPs send to match accounts)
use an index of subject refs; any other filter walks every mirrored user.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Union, cast

from scim2_models import (
    Meta,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    SearchRequest,
    UniquenessException,
    User,
)
from scim2_models.path import CompareOperator, Comparison
from scim2_server.storage import ScimStorage, SearchPage
from scim2_server.utils import parametrize
from sqlalchemy import Connection, Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from lethe.subject import normalize_identifier

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User:"
# The attributes a case can be keyed on, by the URN a filter on them resolves to.
MATCHED = {f"{USER_URN}userName": "userName", f"{USER_URN}emails.value": "emails", f"{USER_URN}externalId": "externalId"}


class MirroredUser(SQLModel, table=True):
    __tablename__ = "intake_scim_users"

    id: str = Field(primary_key=True, max_length=64)
    user_name_ref: str = Field(unique=True, max_length=64)  # userName is unique, case-insensitively (RFC 7643)
    version: int
    body: str  # the SCIM resource as JSON


class MirroredRef(SQLModel, table=True):
    """The subject refs of a mirrored user's identifiers: fast matching, and purge by case."""

    __tablename__ = "intake_scim_refs"

    user_id: str = Field(primary_key=True, max_length=64)
    attribute: str = Field(primary_key=True, max_length=16)
    ref: str = Field(primary_key=True, index=True, max_length=64)


def ensure_tables(bind: Engine | Connection) -> None:
    SQLModel.metadata.create_all(bind, tables=[MirroredUser.__table__, MirroredRef.__table__])  # type: ignore[attr-defined]


def purge_mirrored_users(session: Session, subject_ref: str) -> int:
    """Delete every mirrored user carrying the subject's identifier; call it when the case is
    certified, inside the certifying transaction (the caller commits). Returns how many.
    Works on a ledger where the intake never ran (the tables are created, empty)."""
    ensure_tables(session.connection())
    ids = set(session.exec(select(MirroredRef.user_id).where(MirroredRef.ref == subject_ref)).all())
    if not ids:
        return 0
    session.exec(delete(MirroredRef).where(col(MirroredRef.user_id).in_(ids)))  # type: ignore[call-overload]
    session.exec(delete(MirroredUser).where(col(MirroredUser.id).in_(ids)))  # type: ignore[call-overload]
    return len(ids)


def identifiers_of(user: Resource[Any]) -> dict[str, list[str]]:
    """userName, every email and externalId of a user, by attribute (only those set)."""
    assert isinstance(user, User)
    found = {
        "userName": [user.user_name] if user.user_name else [],
        "emails": [str(email.value) for email in user.emails or [] if email.value],
        "externalId": [user.external_id] if user.external_id else [],
    }
    return {attribute: values for attribute, values in found.items() if values}


def identifier_of(user: Resource[Any], attribute: str) -> str | None:
    """The identifier a case for this user is keyed on; for emails the primary one."""
    assert isinstance(user, User)
    if attribute == "emails":
        emails = [email for email in user.emails or [] if email.value]
        chosen = next((email for email in emails if email.primary), emails[0] if emails else None)
        return str(chosen.value) if chosen else None
    values = identifiers_of(user).get(attribute)
    return values[0] if values else None


class SqlUserStorage(ScimStorage):
    """A scim2-server storage of User resources in the ledger database."""

    def __init__(self, engine: Engine, model: type[Resource[Any]], ref: Callable[[str], str]) -> None:
        ensure_tables(engine)
        self.engine = engine
        self.model = model
        self.ref = ref  # subject_ref with the pepper: the same refs the cases carry

    def get(self, resource_type: ResourceType, resource_id: str, *, response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        with Session(self.engine) as session:
            return self._load(self._row(session, resource_type, resource_id))

    def search(self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *, position: Any = None) -> SearchPage:
        scim_filter = search_request.filter
        if scim_filter is not None and not scim_filter.models:
            scim_filter = parametrize(ScimFilter, Union[(self.model,)])(str(scim_filter))  # noqa: UP007
        with Session(self.engine) as session:
            rows = self._candidates(session, scim_filter)
            found = [user for user in map(self._load, rows) if scim_filter is None or scim_filter.match(user)]
        found.sort(key=lambda user: _sort_key(search_request, user), reverse=search_request.sort_order == SearchRequest.SortOrder.descending)
        start = search_request.start_index_0 or 0
        stop = None if search_request.count is None else start + search_request.count
        return SearchPage(total=len(found), resources=found[start:stop])

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        user = resource.model_copy(deep=True)
        user.id = uuid.uuid4().hex
        now = datetime.now(UTC)
        user.meta = Meta(resource_type=resource_type.name, created=now, last_modified=now, version='W/"1"')
        with Session(self.engine) as session, self._unique():
            session.add(MirroredUser(id=user.id, user_name_ref=self._user_name_ref(user), version=1, body=_dump(user)))
            self._index(session, user)
            session.commit()
        return user

    def update(self, resource_type: ResourceType, resource: Resource[Any], *, expected_version: str | None = None) -> Resource[Any]:
        with Session(self.engine) as session, self._unique():
            row = self._row(session, resource_type, cast(str, resource.id))
            if expected_version is not None and expected_version != _etag(row.version):
                raise PreconditionFailedException
            stored = self._load(row)
            user = self.model.model_validate(resource.model_dump())
            assert stored.meta is not None
            user.meta = stored.meta.model_copy(update={"location": None, "last_modified": datetime.now(UTC), "version": _etag(row.version + 1)})
            # Optimistic: a concurrent writer that got there first leaves nothing to update.
            changed = session.exec(
                update(MirroredUser)  # type: ignore[call-overload]
                .where(col(MirroredUser.id) == row.id, col(MirroredUser.version) == row.version)
                .values(version=row.version + 1, user_name_ref=self._user_name_ref(user), body=_dump(user))
            )
            if changed.rowcount != 1:
                raise PreconditionFailedException
            session.exec(delete(MirroredRef).where(col(MirroredRef.user_id) == row.id))  # type: ignore[call-overload]
            self._index(session, user)
            session.commit()
        return user

    def delete(self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None) -> None:
        with Session(self.engine) as session:
            row = self._row(session, resource_type, resource_id)
            if expected_version is not None and expected_version != _etag(row.version):
                raise PreconditionFailedException
            session.exec(delete(MirroredRef).where(col(MirroredRef.user_id) == row.id))  # type: ignore[call-overload]
            session.delete(row)
            session.commit()

    # --- inside ---------------------------------------------------------------------------

    def _row(self, session: Session, resource_type: ResourceType, resource_id: str) -> MirroredUser:
        row = session.get(MirroredUser, resource_id)
        if row is None:
            raise NotFoundException(detail=f"{resource_type.name} {resource_id!r} not found")
        return row

    def _load(self, row: MirroredUser) -> Resource[Any]:
        return self.model.model_validate_json(row.body)

    def _candidates(self, session: Session, scim_filter: ScimFilter[Any] | None) -> list[MirroredUser]:
        lookup = _indexed_lookup(scim_filter)
        if lookup is None:
            return list(session.exec(select(MirroredUser)).all())
        attribute, value = lookup
        try:
            ref = self.ref(value)
        except ValueError:
            return []
        ids = select(MirroredRef.user_id).where(MirroredRef.attribute == attribute, MirroredRef.ref == ref)
        return list(session.exec(select(MirroredUser).where(col(MirroredUser.id).in_(ids))).all())

    def _user_name_ref(self, user: Resource[Any]) -> str:
        assert isinstance(user, User) and user.user_name is not None  # userName is required by the schema
        return self.ref(user.user_name)

    def _index(self, session: Session, user: Resource[Any]) -> None:
        refs = {(attribute, self.ref(value)) for attribute, values in identifiers_of(user).items() for value in values if value.strip()}
        for attribute, ref in refs:
            session.add(MirroredRef(user_id=cast(str, user.id), attribute=attribute, ref=ref))

    @contextmanager
    def _unique(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise UniquenessException(detail="userName is already taken") from None


def _indexed_lookup(scim_filter: ScimFilter[Any] | None) -> tuple[str, str] | None:
    if scim_filter is None or not isinstance(scim_filter.ast, Comparison):
        return None
    node = scim_filter.ast
    if node.op != CompareOperator.eq or not isinstance(node.value, str):
        return None
    binding = scim_filter.resolve_comparison(node.attr_path, strict=False)
    attribute = MATCHED.get(binding.urn) if binding is not None else None
    if attribute is None:
        return None
    try:
        normalize_identifier(node.value)
    except ValueError:
        return None
    return attribute, node.value


def _sort_key(search_request: SearchRequest[Any], user: Resource[Any]) -> tuple[bool, Any, str]:
    value = search_request.sort_value(user) if search_request.sort_by else None
    return value is None, value if value is not None else "", cast(str, user.id)


def _etag(version: int) -> str:
    return f'W/"{version}"'


def _dump(user: Resource[Any]) -> str:
    assert isinstance(user, User)
    # A password pushed by the IdP is write-only in SCIM and useless to Lethe: never kept.
    return user.model_copy(update={"password": None}).model_dump_json(exclude_none=True)

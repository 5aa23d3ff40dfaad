"""Connecting to Temporal, and the search attributes operators filter cases by."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from lethe.settings import TemporalSettings

STATUS = SearchAttributeKey.for_keyword("LetheStatus")
SUBJECT_REF = SearchAttributeKey.for_keyword("LetheSubjectRef")
PENDING_SYSTEMS = SearchAttributeKey.for_keyword_list("LethePendingSystems")
DEADLINE = SearchAttributeKey.for_datetime("LetheDeadline")
SEARCH_ATTRIBUTES = (STATUS, SUBJECT_REF, PENDING_SYSTEMS, DEADLINE)
# The names `temporal server start-dev --search-attribute NAME=TYPE` knows the types by.
CLI_TYPE_NAMES = {STATUS: "Keyword", SUBJECT_REF: "Keyword", PENDING_SYSTEMS: "KeywordList", DEADLINE: "Datetime"}


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(
        settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register Lethe's search attributes on the namespace where they are missing."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        existing = set(listed.custom_attributes)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server cannot list
            raise
        existing = set()
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in SEARCH_ATTRIBUTES
        if key.name not in existing
    }
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
            )
        except RPCError as exc:
            if exc.status is not RPCStatusCode.ALREADY_EXISTS:
                raise

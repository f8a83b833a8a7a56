"""Masking of personal data in what the pipeline emits: metadata values and log lines.

Metadata and logs end up in Dagster's event log, which is kept for as long as
the instance keeps runs and is shown to anyone with access to the UI. Whatever
a value holds (a field name, a URI, a message), every email address in it is
masked the way check samples are (``mask_email``), keeping the domain
and the first two characters: enough to find the record, not to read it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from dagster import (
    JsonMetadataValue,
    MarkdownMetadataValue,
    MetadataValue,
    PathMetadataValue,
    TextMetadataValue,
    UrlMetadataValue,
)

# An address as it appears in running text. The masked form (``an***@...``)
# does not match again, so masking twice changes nothing.
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")


def mask_email(value: str | None) -> str:
    """``Ann.Example@example.com`` -> ``An***@example.com``: enough to find the record, not to read it."""
    if value is None:
        return "<null>"
    local, _, domain = value.partition("@")
    return f"{local[:2]}***@{domain}" if domain else f"{value[:2]}***"


def mask_emails(text: str) -> str:
    """``text`` with every email address in it masked."""
    return EMAIL.sub(lambda match: mask_email(match.group(0)), text)


def _masked_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_emails(value)
    if isinstance(value, TextMetadataValue):
        return MetadataValue.text(mask_emails(value.text))
    if isinstance(value, MarkdownMetadataValue):
        return MetadataValue.md(mask_emails(value.md_str))
    if isinstance(value, PathMetadataValue):
        return MetadataValue.path(mask_emails(value.path))
    if isinstance(value, UrlMetadataValue):
        return MetadataValue.url(mask_emails(value.url))
    if isinstance(value, JsonMetadataValue):
        return MetadataValue.json(_masked_value(value.data))
    if isinstance(value, MetadataValue):
        # Numbers, booleans, table schemas (declared column names): no personal data.
        return value
    if isinstance(value, Mapping):
        return {_masked_value(key): _masked_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked_value(item) for item in value]
    return value


def mask_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metadata with every email address in its keys and text values masked."""
    return {mask_emails(key): _masked_value(value) for key, value in (metadata or {}).items()}


Event = TypeVar("Event")


def masked(event: Event) -> Event:
    """An ``Output`` or ``AssetCheckResult`` whose metadata is masked."""
    return event.with_metadata(mask_metadata(event.metadata))  # type: ignore[attr-defined]


Step = TypeVar("Step")


def masking_errors(steps: Iterator[Step]) -> Iterator[Step]:
    """``steps``, except that an error whose message holds an email address is raised again masked.

    A step's error goes into the event log too (message and cause chain). The
    masked error has the same type where it can be built from one message,
    and no cause: the original one would carry the address.
    """
    try:
        yield from steps
    except Exception as error:
        message = str(error)
        masked_message = mask_emails(message)
        if masked_message == message:
            raise
        try:
            replacement = type(error)(masked_message)
        except Exception:
            replacement = RuntimeError(masked_message)
        raise replacement from None


def masks_errors(step: Callable[..., Iterator[Step]]) -> Callable[..., Iterator[Step]]:
    """A generator function whose errors are masked as :func:`masking_errors` does."""

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Step]:
        yield from masking_errors(step(*args, **kwargs))

    return wrapper

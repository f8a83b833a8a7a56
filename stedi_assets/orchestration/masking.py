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

# An address as it appears in running text, in any of the forms SMTP allows
# (RFC 5321/5322, with RFC 6531's Unicode): a local part, then "@" and a
# domain, a host name in any script, with or without dots (localhost), or an
# address literal in brackets ([192.168.0.1], [IPv6:::1]).
#
# The local part is a quoted string ("john doe"), or a run of the characters
# an unquoted one may hold: any but ASCII whitespace and controls and the
# characters RFC 5322 keeps out of it; dots anywhere, so that a misplaced one
# ("ann.@x.com") shields nothing. Unicode spaces and invisible characters count
# as part of it, so that one written next to an address never shields it. "/"
# and "=" separate the parts of paths, URIs and key=value text: they end the
# local part only when something follows (an address with one inside its local
# part is masked after the last one, "a/b@x.com" shows as "a/b***@x.com").
#
# The domain is only looked at (a lookahead), not consumed: an address written
# right after another's domain is found too. It starts with a character a
# local part may hold, or with the "[" of an address literal; not with "*",
# which starts what is left of a masked local part, so that masking twice
# changes nothing.
_LOCAL_CHARACTER = r"[^\x00-\x20\x7f\"(),/:;<=>@\[\\\]]"
_SEPARATOR = r"[/=]"
_QUOTED = r'"(?:[^"\\\r\n]|\\.)*"'
_DOMAIN_START = r"[^\x00-\x20\x7f\"(),./:;<=>@\\\]*]"
EMAIL = re.compile(
    rf"(?P<local>{_QUOTED}|{_LOCAL_CHARACTER}+{_SEPARATOR}*|{_SEPARATOR}+)@(?={_DOMAIN_START})"
)


def _masked_local(local: str) -> str:
    # Stars ending the kept characters are not kept: a masked local part
    # (``an***``, ``a***``) masks to itself, so masking twice changes nothing.
    # A quoted one keeps its closing quote, so that the quotes in the text
    # still pair up as they did.
    if len(local) >= 2 and local[0] == local[-1] == '"':
        return f'"{local[1:2].rstrip("*")}***"'
    return f"{local[:2].rstrip('*')}***"


def mask_email(value: str | None) -> str:
    """``Ann.Example@example.com`` -> ``An***@example.com``: enough to find the record, not to read it.

    At most the first two characters of the local part are kept (of a quoted
    one, its opening quote and first character: ``"j***"@example.com``), and
    the domain after the last "@".
    """
    if value is None:
        return "<null>"
    local, at, domain = value.rpartition("@")
    return f"{_masked_local(local)}@{domain}" if at else _masked_local(value)


def mask_emails(text: str) -> str:
    """``text`` with the local part of every email address in it masked as ``mask_email`` does."""
    return EMAIL.sub(lambda match: f"{_masked_local(match['local'])}@", text)


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

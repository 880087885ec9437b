"""Session tags: what a tag is, and reading and changing a session's tags.

A session's tags are its meta ``tags``: a JSON list of strings, sorted, each once. They are
written by ``llm386 tag`` (``retag``) and by ``llm386 import --tag``; the sessions list filters
on them. Anything else in ``tags`` (a writer that stored a non-list, or non-strings) is read as
no tags, never as an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from runtime.errors import InvalidInput
from runtime.storage.interface import BlockStore

TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,63}$")
META_KEY = "tags"


def check_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise InvalidInput saying what one is."""
    if not TAG_RE.match(tag):
        shown = tag if len(tag) <= 40 else tag[:40] + "…"
        raise InvalidInput(
            f"tag {shown!r} is not valid: 1-64 characters from letters, digits and "
            "`. _ : / + -`, starting with a letter or digit"
        )
    return tag


def tags_of(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the strings of a session's meta ``tags``, sorted, each once."""
    tags = meta.get(META_KEY)
    return tuple(sorted({t for t in tags if isinstance(t, str)})) if isinstance(tags, list) else ()


def retag(
    store: BlockStore, session: str, add: Iterable[str] = (), remove: Iterable[str] = ()
) -> tuple[str, ...]:
    """Add and remove tags of an existing session in one write; return its tags after."""
    adding = {check_tag(t) for t in add}
    removing = set(remove)

    def change() -> tuple[str, ...]:
        current = set(tags_of(store.session_info(session).meta))  # SessionNotFound if none
        tags = sorted((current | adding) - removing)
        store.set_session_meta(session, **{META_KEY: tags})
        return tuple(tags)

    return store.atomic(change)

"""Roles: who may replay, flag or spend. The one guard every acting view wears.

Two roles. An *operator* (the default for an account) reads everything and may act: replay a
turn (which spends money at the provider), re-page it, flag or unflag it, cancel a replay, and
create or revoke ingest tokens. A *viewer* (member of the Django group ``viewer``) reads
everything and may do none of these. `manage.py llm386_user` adds accounts with a role.

Every view that acts is wrapped in :func:`operator_required`; templates ask ``user|can_act``
only to hide the buttons a viewer could not use, never as the check itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

VIEWER = "viewer"
OPERATOR = "operator"
ROLES = (OPERATOR, VIEWER)

REFUSED = (
    "Your account ({user}) is a viewer: it can read every page but cannot replay, re-page, "
    "flag or spend. Ask an operator to do it, or to run "
    "`python manage.py llm386_user role {user} operator`."
)


#: Where role_of keeps a user's role for the rest of the request (request.user is per request).
_ROLE_ATTR = "_llm386_role"


def role_of(user: AbstractBaseUser | AnonymousUser) -> str:
    """Return ``viewer`` or ``operator`` for a logged-in user (anonymous users are viewers)."""
    if not user.is_authenticated:
        return VIEWER
    known = getattr(user, _ROLE_ATTR, None)  # asked once per request: a page asks many times
    if known is not None:
        return str(known)
    groups = getattr(user, "groups", None)
    role = VIEWER if groups is not None and groups.filter(name=VIEWER).exists() else OPERATOR
    setattr(user, _ROLE_ATTR, role)
    return role


def can_act(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Return whether ``user`` may replay, re-page, flag or spend."""
    return role_of(user) == OPERATOR


def set_role(user: Any, role: str) -> None:
    """Give ``user`` the role ``role`` (one of ROLES)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    group, _ = Group.objects.get_or_create(name=VIEWER)
    user.__dict__.pop(_ROLE_ATTR, None)
    if role == VIEWER:
        user.groups.add(group)
    else:
        user.groups.remove(group)


def operator_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse the view with 403 (and say why) unless the user may act."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_act(request.user):
            raise PermissionDenied(REFUSED.format(user=request.user.get_username()))
        return view(request, *args, **kwargs)

    return wrapper

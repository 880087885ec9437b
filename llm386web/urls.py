"""URL map: sessions, blocks, login/logout. Every page requires login (LoginRequiredMiddleware)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from .views import blocks, errors, search, sessions

urlpatterns = [
    path("", sessions.session_list, name="home"),
    path("sessions/", sessions.session_list, name="sessions"),
    path("sessions/<str:session_id>/", sessions.session_detail, name="session"),
    path("blocks/<str:block_id>/", blocks.block_detail, name="block"),
    path("blocks/<str:block_id>/raw", blocks.block_raw, name="block-raw"),
    path("search/", search.search, name="search"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]

handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error

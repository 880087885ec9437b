"""`manage.py llm386_demo`: make the app usable at once: a local user, demo data, login help.

Idempotent: run it before every `runserver` (``make run`` does). The user "admin" gets the
password from $LLM386_PASSWORD, or one generated on the first run and kept in
$LLM386_HOME/admin_password (mode 0600), so the printed login always works.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from llm386web import audit
from llm386web.conf import web_config
from llm386web.home import read_or_create_secret
from llm386web.models import Action
from llm386web.store_access import get_store, get_traces
from runtime.agent.core import load_demo_conversations
from runtime.demo.budget import load_budget_sessions
from runtime.demo.captured import load_captured_sessions
from runtime.demo.derived import demo_experiments, demo_replays, load_derived
from runtime.indexes import callpoints
from runtime.indexes.blockuses import sync as sync_block_uses
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceStore
from runtime.transfer.importer import DEMO_LICENSE, load_demo_sessions

USERNAME = "admin"


def load_tau_bench(store: BlockStore, traces: TraceStore) -> str:
    """Import the shipped tau-bench airline runs (idempotent); return a one-line summary."""
    report = load_demo_sessions(store, traces)
    if not report.turns_recorded and not report.sessions_written:
        return f"tau-bench airline: all {len(report.sessions)} sessions already loaded."
    return (
        f"tau-bench airline: {report.sessions_written} session(s) and {report.turns_recorded} "
        f"turn(s) imported ({report.failing} of {len(report.sessions)} runs failed their task; "
        f"data {DEMO_LICENSE})."
    )


# The demo loaders `make demo` runs, in order. Each takes (store, traces), must be safe to run
# again (it adds only what is missing) and returns a one-line summary: the imported tau-bench
# runs, the sample agent's conversations with the offline model (replayable offline), a session
# under a tight token budget (turns omit blocks), a replay and an experiment of its turns, and
# calls captured by the real proxy (one failing mid-session). See runtime.demo.
DEMO_LOADERS: list[Callable[[BlockStore, TraceStore], str]] = [
    load_tau_bench,
    load_demo_conversations,
    load_budget_sessions,
    load_derived,
    load_captured_sessions,
]


def audit_demo_actions(traces: TraceStore, username: str = USERNAME) -> None:
    """Put the demo's replay and experiment in the audit list (once), as ``username``'s."""
    for rec in demo_replays(traces):
        original = traces.get(rec.parent_call_id or "")
        same = "bytes identical" if rec.prompt_hash == original.prompt_hash else "bytes differ"
        audit.recorded_by_demo(username, Action.REPLAY, original.call_id, rec.provider, rec,
                               f"{same} (demo)")  # fmt: skip
    for row in demo_experiments(traces):
        audit.recorded_by_demo(username, Action.EXPERIMENT, row.parent, row.description,
                               traces.get(row.child), f"{row.status}: {row.provider} {row.model}")  # fmt: skip


def load_demo_data(
    store: BlockStore,
    out: Callable[[str], None] = print,
    loaders: Sequence[Callable[[BlockStore, TraceStore], str]] = DEMO_LOADERS,
) -> None:
    """Run the demo loaders on ``store``, reporting each one's summary and time to ``out``."""
    traces = get_traces()
    for loader in loaders:
        started = time.monotonic()
        summary = loader(store, traces)
        out(f"{summary} ({time.monotonic() - started:.1f} s)")
    audit_demo_actions(traces)
    started = time.monotonic()
    sync_block_uses(store, traces)  # so the first block page need not index every turn
    callpoints.sync(store, traces)  # and the first dashboard need not index every call
    out(f"Indexed which turns used each block, and every call for the dashboard "
        f"({time.monotonic() - started:.1f} s).")  # fmt: skip
    out(f"The store at {web_config().STORE_PATH} holds {store.session_count()} session(s).")


class Command(BaseCommand):
    help = "Create the local user if needed, load the demo data, and print how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="URL to print")
        parser.add_argument(
            "--no-data", action="store_true", help="only set up the login; load no demo data"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password, source = self._password()
        note = self._ensure_user(password)
        self._restrict_database()
        if not options["no_data"]:
            load_demo_data(get_store(), out=self.stdout.write)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("llm386 is ready. Log in with:"))
        self.stdout.write(f"  URL:       {options['url']}")
        self.stdout.write(f"  Username:  {USERNAME}")
        self.stdout.write(f"  Password:  {password}   ({source})")
        if note:
            self.stdout.write(self.style.WARNING(note))

    def _password(self) -> tuple[str, str]:
        from_env = os.environ.get("LLM386_PASSWORD")
        if from_env:
            return from_env, "from LLM386_PASSWORD"
        path = web_config().HOME / "admin_password"
        return read_or_create_secret(path, nbytes=12), f"kept in {path}"

    def _restrict_database(self) -> None:
        """Make the login database (password hashes, sessions) readable by its owner only."""
        name = settings.DATABASES["default"]["NAME"]
        if isinstance(name, str | os.PathLike) and os.path.isfile(name):
            os.chmod(name, 0o600)

    def _ensure_user(self, password: str) -> str:
        """Create the user, or align its password; return a note when the password differs."""
        users = get_user_model()
        try:
            user = users.objects.filter(username=USERNAME).first()
        except DatabaseError as exc:
            raise CommandError(
                f"the user database is not ready ({exc}); run `python manage.py migrate` first"
            ) from None
        if user is None:
            users.objects.create_superuser(USERNAME, email="", password=password)
            return ""
        if user.check_password(password):
            return ""
        if os.environ.get("LLM386_PASSWORD"):
            user.set_password(password)
            user.save(update_fields=["password"])
            return ""
        # Someone changed it on purpose (manage.py changepassword): keep theirs.
        return (
            f"The password of {USERNAME!r} was changed after it was generated, so the one above "
            "does not work: use yours, set LLM386_PASSWORD, or run "
            f"`python manage.py changepassword {USERNAME}`."
        )

"""Two machines, one PostgreSQL store: two web app processes (each with its own home and user
database) and an agent process on a third "machine" all use the same database; a user on each
web app sees the sessions the agent writes, as they are written, and the other user's too."""

from __future__ import annotations

from pathlib import Path

from tests.machines import Machine, run_agent


def test_two_web_apps_on_one_database_see_each_others_sessions_live(
    machines: tuple[Machine, Machine], tmp_path: Path, pg_url: str
) -> None:
    alice, bob = machines
    alice.log_in()
    bob.log_in()
    assert "carol-laptop" not in alice.sessions() + bob.sessions()
    (tmp_path / "carol").mkdir()
    run_agent(tmp_path / "carol", pg_url, "carol-laptop", "What is 1234 * 56?")
    assert "carol-laptop" in alice.sessions() and "carol-laptop" in bob.sessions()
    run_agent(tmp_path / "carol", pg_url, "dave-ci", "Hello!")  # a second agent, later
    assert "dave-ci" in alice.sessions() and "dave-ci" in bob.sessions()  # no restart, no reload

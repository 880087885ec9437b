"""The PostgreSQL engine's own promises: schema versions, faults, timeouts, retries, no password leaks.

The seam's contract itself is in test_kv_contract.py; these need a real server to misbehave.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback

import psycopg
import pytest

from runtime.errors import StoreError, StoreNotAStore, StoreReadOnly, StoreUnavailable
from runtime.storage.postgres import schema
from runtime.storage.postgres.engine import WRITER_LOCK, PostgresEngine
from runtime.storage.postgres.urls import location
from tests.pg_server import PASSWORD, PASSWORD_ROLE, PgServer, _free_port


@pytest.fixture
def engine(pg_url):
    opened = PostgresEngine(pg_url)
    yield opened
    opened.close()


def _leaks(exc: BaseException, secret: str) -> list[str]:
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    return [text for text in shown if secret in text]


def test_the_schema_step_runs_once_and_opening_again_is_a_no_op(pg_url):
    PostgresEngine(pg_url).close()
    PostgresEngine(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT component, version FROM llm386_schema").fetchall() == [
            ("kv", schema.SCHEMA_VERSION)
        ]
        assert conn.execute("SELECT count(*) FROM llm386_kv").fetchone() == (0,)


def test_a_read_only_engine_refuses_a_database_without_a_store_and_writes(pg_url):
    with pytest.raises(StoreNotAStore, match="llm386 migrate"):
        PostgresEngine(pg_url, readonly=True)
    with pytest.raises(StoreNotAStore):
        PostgresEngine(pg_url, create=False)
    PostgresEngine(pg_url).close()
    reader = PostgresEngine(pg_url, readonly=True)
    assert reader.read(lambda t: t.get("t", b"k")) is None
    with pytest.raises(StoreReadOnly):
        reader.write(lambda t: t.put("t", b"k", b"v"))
    with pytest.raises(StoreReadOnly):  # a write inside a read transaction
        PostgresEngine(pg_url).read(lambda t: t.put("t", b"k", b"v"))
    reader.close()


def test_a_store_of_a_newer_schema_version_is_refused(pg_url):
    PostgresEngine(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE llm386_schema SET version = 99")
    with pytest.raises(StoreError, match="upgrade llm386"):
        PostgresEngine(pg_url)


def test_two_engines_opening_a_new_database_at_once_both_work(pg_url):
    opened: list[PostgresEngine] = []
    threads = [
        threading.Thread(target=lambda: opened.append(PostgresEngine(pg_url))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(opened) == 4
    opened[0].write(lambda t: t.put("t", b"k", b"v"))
    assert [e.read(lambda t: t.get("t", b"k")) for e in opened] == [b"v"] * 4
    for e in opened:
        e.close()


def test_location_repr_and_errors_never_show_the_password(pg_server):
    db = pg_server.create_database()
    url = pg_server.tcp_url(db)
    engine = PostgresEngine(url)
    try:
        assert PASSWORD not in engine.location and PASSWORD not in repr(engine)
        assert engine.location == f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{pg_server.port}/{db}"
        engine.write(lambda t: t.put("t", b"k", b"v"))  # the password really logs in
    finally:
        engine.close()
    assert location(url + "?password=x&sslmode=disable").endswith("?sslmode=disable")


def test_a_wrong_password_says_so_without_showing_it(pg_server, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-Pa55-word"
    url = pg_server.tcp_url(pg_server.create_database(), password=wrong)
    with pytest.raises(StoreUnavailable) as raised:
        PostgresEngine(url)
    message = str(raised.value)
    assert "password authentication failed" in message and "127.0.0.1" in message
    assert "~/.pgpass" in message  # says what to do
    assert _leaks(raised.value, wrong) == []
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert [r for r in caplog.records if wrong in r.getMessage()] == []


def test_no_server_at_the_address_fails_at_once_naming_the_host_and_a_hint():
    url = f"postgresql://someone:hunter2@127.0.0.1:{_free_port()}/db"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        PostgresEngine(url)
    assert time.monotonic() - started < 5
    assert "127.0.0.1" in str(raised.value) and "pg_isready" in str(raised.value)
    assert _leaks(raised.value, "hunter2") == []


def test_a_url_that_is_not_postgresql_is_refused():
    with pytest.raises(StoreError, match="postgresql://"):
        PostgresEngine("/tmp/some/path")


def _backends(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'llm386' "
            "AND datname = current_database() AND state = 'idle in transaction'"
        ).fetchall()
    return [pid for (pid,) in rows]


def _terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(url) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def test_a_connection_lost_mid_write_rolls_it_back_and_the_engine_recovers(engine, pg_url):
    engine.write(lambda t: t.put("t", b"kept", b"old"))

    def cut_off(t) -> None:
        t.put("t", b"kept", b"new")
        t.put_many("t", [(b"k%d" % i, b"v") for i in range(100)])
        _terminate(pg_url, _backends(pg_url))  # the server kills this very transaction
        t.put("t", b"after", b"v")

    with pytest.raises(StoreUnavailable, match="rolled back: nothing of it was stored"):
        engine.write(cut_off)
    assert engine.read(lambda t: list(t.scan("t"))) == [(b"kept", b"old")]
    engine.write(lambda t: t.put("t", b"again", b"v"))
    assert engine.read(lambda t: t.count("t")) == 2


def test_a_pooled_connection_killed_while_idle_is_replaced(engine, pg_url):
    engine.write(lambda t: t.put("t", b"k", b"v"))
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE "
            "application_name = 'llm386' AND datname = current_database()"
        )
    assert engine.read(lambda t: t.get("t", b"k")) == b"v"


def test_a_write_waiting_too_long_for_the_writer_lock_times_out_cleanly(pg_url):
    engine = PostgresEngine(pg_url, statement_timeout=0.5)
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [WRITER_LOCK])  # in a transaction
        with pytest.raises(StoreError, match="statement timeout") as raised:
            engine.write(lambda t: t.put("t", b"k", b"v"))
        assert not isinstance(raised.value, StoreUnavailable)
    assert engine.read(lambda t: t.get("t", b"k")) is None
    engine.write(lambda t: t.put("t", b"k", b"v"))  # the lock holder is gone: writing works
    engine.close()


def test_a_deadlock_is_retried_and_the_write_lands_once(pg_url):
    # PostgreSQL looks for a deadlock once, deadlock_timeout after a wait starts: the engine's
    # wait must be the one that closes the cycle, and it looks after 100 ms.
    engine = PostgresEngine(pg_url + "&options=-c%20deadlock_timeout%3D100ms")
    engine.write(lambda t: t.put("t", b"x", b"0"))
    runs: list[int] = []
    locked, go = threading.Event(), threading.Event()

    def bump(t) -> None:
        runs.append(1)
        locked.set()  # this transaction holds the writer lock now
        go.wait(30)
        t.put("t", b"x", b"%d" % (int(t.get("t", b"x") or b"0") + 1))

    with psycopg.connect(pg_url) as other:
        other.execute("SET deadlock_timeout = '60s'")
        other.execute("UPDATE llm386_kv SET v = '\\x35' WHERE t = 't' AND k = '\\x78'")
        writer = threading.Thread(target=lambda: engine.write(bump))
        writer.start()
        assert locked.wait(30)

        def take_writer_lock() -> None:
            other.execute("SELECT pg_advisory_xact_lock(%s)", [WRITER_LOCK])
            other.commit()

        blocked = threading.Thread(target=take_writer_lock)
        blocked.start()
        time.sleep(0.3)  # other waits for the engine's writer lock...
        go.set()  # ...and the engine now waits for other's row lock: a cycle
        blocked.join(30)
        writer.join(30)
    assert len(runs) == 2  # the deadlock victim ran again
    assert engine.read(lambda t: t.get("t", b"x")) == b"6"  # "5" from the other side, plus one
    engine.close()


def test_a_statement_error_the_caller_swallowed_still_fails_the_write(engine):
    def swallow(t) -> None:
        t.put("t", b"a", b"v")
        with contextlib.suppress(StoreError):
            t.put("bad\x00name", b"k", b"v")  # PostgreSQL text cannot hold NUL

    with pytest.raises(StoreError):
        engine.write(swallow)
    assert engine.read(lambda t: t.get("t", b"a")) is None


def test_a_scan_kept_past_its_transaction_refuses_to_run(engine):
    engine.write(lambda t: t.put_many("t", [(b"%04d" % i, b"v") for i in range(200)]))
    scan = engine.read(lambda t: t.scan("t"))
    with pytest.raises(StoreError, match="after it ended"):
        list(scan)


def test_the_server_going_down_after_opening_gives_a_clean_error(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server = PgServer().start()
    try:
        server.sql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        engine = PostgresEngine(server.tcp_url(server.create_database()), pool_timeout=2)
        engine.write(lambda t: t.put("t", b"k", b"v"))
        server.stop("immediate")
        started = time.monotonic()
        for attempt in (engine.read, engine.write):
            with pytest.raises(StoreUnavailable) as raised:
                attempt(lambda t: t.put("t", b"k2", b"v") if not t.readonly else t.get("t", b"k"))
            assert "127.0.0.1" in str(raised.value) and _leaks(raised.value, PASSWORD) == []
        assert time.monotonic() - started < 20
        engine.close()
    finally:
        server.remove()
    assert [r for r in caplog.records if PASSWORD in r.getMessage()] == []

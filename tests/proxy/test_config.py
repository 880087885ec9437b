"""The ``[proxy]`` section of llm386.toml, and the ``llm386 proxy`` flags that win over it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from runtime.cli import build_parser, main
from runtime.cli.proxy_cmds import otlp_limits, page_settings, proxy_config
from runtime.config import ProxyConfig, load_config
from runtime.errors import ConfigError, InvalidInput
from runtime.proxy.pager import PageSettings
from tests.fakes.anthropic_server import AnthropicServer

FULL = """[proxy]
host = "0.0.0.0"
port = 9911
anthropic_upstream = "http://127.0.0.1:1/anthropic"
openai_upstream = "http://127.0.0.1:2/v1"
fail_closed = true
queue_size = 50
timeout_seconds = 12.5
"""


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llm386.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _args(path: Path, *flags: str) -> ProxyConfig:
    return proxy_config(build_parser().parse_args(["proxy", "--config", str(path), *flags]))


def test_no_proxy_section_gives_the_defaults_the_cli_used_to_hard_code(tmp_path):
    conf = load_config(_toml(tmp_path, "[store]\n")).proxy
    assert conf == ProxyConfig()
    assert (conf.host, conf.port, conf.fail_closed, conf.queue_size) == (
        "127.0.0.1", 8787, False, 10_000)  # fmt: skip
    assert conf.anthropic_upstream == "https://api.anthropic.com"
    assert conf.openai_upstream == "https://api.openai.com/v1"


def test_every_proxy_key_is_read_from_the_file(tmp_path):
    conf = _args(_toml(tmp_path, FULL))
    assert conf == ProxyConfig("0.0.0.0", 9911, "http://127.0.0.1:1/anthropic",
                               "http://127.0.0.1:2/v1", True, 50, 12.5)  # fmt: skip


def test_each_flag_wins_over_its_key(tmp_path):
    conf = _args(_toml(tmp_path, FULL), "--port", "9922", "--no-fail-closed",
                 "--openai-upstream", "http://127.0.0.1:3/v1", "--queue-size", "7",
                 "--timeout", "3")  # fmt: skip
    assert (conf.port, conf.fail_closed, conf.openai_upstream, conf.queue_size) == (
        9922, False, "http://127.0.0.1:3/v1", 7)  # fmt: skip
    assert conf.timeout_seconds == 3.0
    assert (conf.host, conf.anthropic_upstream) == ("0.0.0.0", "http://127.0.0.1:1/anthropic")
    assert _args(_toml(tmp_path, "[proxy]\nfail_closed = false\n"), "--fail-closed").fail_closed


@pytest.mark.parametrize(
    ("text", "words"),
    [("port = 70000", "proxy.port"), ("queue_size = 0", "proxy.queue_size"),
     ('anthropic_upstream = "ftp://x"', "proxy.anthropic_upstream"),
     ('fail_closed = "yes"', "proxy.fail_closed"), ("api_key = 'sk-x'", "API keys never"),
     ('page = "fastest"', "proxy.page"), ("page_budget = -1", "proxy.page_budget"),
     ("otlp_workers = -1", "proxy.otlp_workers"), ("max_body_bytes = 0", "proxy.max_body_bytes"),
     ("max_otlp_body_bytes = 0", "proxy.max_otlp_body_bytes")],
)  # fmt: skip
def test_a_wrong_proxy_value_names_its_key(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(_toml(tmp_path, f"[proxy]\n{text}\n"))


def test_an_unknown_proxy_key_is_a_warning(tmp_path):
    config = load_config(_toml(tmp_path, "[proxy]\nport = 1\nupstream = 'x'\n"))
    assert config.warnings == (
        "unknown key proxy.upstream in llm386.toml (line 3); known: anthropic_upstream, "
        "fail_closed, host, max_body_bytes, max_otlp_body_bytes, openai_upstream, otlp_workers, "
        "page, page_budget, port, queue_size, timeout_seconds",
    )


@pytest.mark.parametrize(("flags", "words"), [(["--port", "-1"], "--port -1: expected a port"),
                                              (["--queue-size", "0"], "--queue-size 0: expected"),
                                              (["--timeout", "0"], "--timeout 0.0: expected")])  # fmt: skip
def test_a_wrong_flag_is_a_clear_error(tmp_path, capsys, flags, words):
    assert main(["proxy", "--config", str(_toml(tmp_path, "")), *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_proxy_listens_and_forwards_where_the_file_and_flags_say(tmp_path):
    port = _free_port()
    with AnthropicServer() as up:
        path = _toml(tmp_path, f'[proxy]\nport = 1\nanthropic_upstream = "{up.base_url}"\n'
                               "queue_size = 123\n")  # fmt: skip
        cmd = [sys.executable, "-c", "from runtime.cli import main; raise SystemExit(main())", "--store", str(tmp_path / "store"), "proxy",
               "--config", str(path), "--port", str(port)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
        try:
            status = _status(f"http://127.0.0.1:{port}", proc)
            reply = httpx2.post(f"http://127.0.0.1:{port}/v1/messages", timeout=10,
                                content=b'{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[]}')  # fmt: skip
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert status["upstreams"]["anthropic"] == up.base_url
        assert status["queue_capacity"] == 123
        assert reply.status_code == 200 and up.requests[-1].body.startswith(b'{"model":"claude')
    assert f"127.0.0.1:{port}" in err.decode()


def _status(url: str, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return dict(json.loads(httpx2.get(url + "/llm386/status", timeout=1).content))
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the proxy did not start (exit {proc.poll()})")


def test_page_is_read_from_the_file_and_the_flag_wins(tmp_path):
    path = _toml(tmp_path, '[proxy]\npage = "paper"\npage_budget = 8000\n')
    assert page_settings(_args(path)) == PageSettings("paper", 8000)
    assert page_settings(_args(path, "--page")) == PageSettings("default", 8000)
    assert page_settings(_args(path, "--page", "agent", "--page-budget", "0")) == PageSettings(
        "agent"
    )
    assert page_settings(_args(_toml(tmp_path, "[proxy]\n"))) is None


def test_an_unknown_page_preset_flag_names_the_presets(tmp_path):
    with pytest.raises(
        InvalidInput, match="--page 'fastest': expected .*agent, cache-aware, default, paper"
    ):
        _args(_toml(tmp_path, "[proxy]\n"), "--page", "fastest")


def test_body_limits_and_otlp_workers_are_read_from_the_file_and_the_flags_win(tmp_path):
    path = _toml(tmp_path, "[proxy]\nmax_body_bytes = 1000\nmax_otlp_body_bytes = 2000\n"
                           "otlp_workers = 0\n")  # fmt: skip
    conf = _args(path)
    assert (conf.max_body_bytes, conf.max_otlp_body_bytes, conf.otlp_workers) == (1000, 2000, 0)
    conf = _args(
        path, "--max-body-bytes", "10", "--max-otlp-body-bytes", "20", "--otlp-workers", "2"
    )
    assert (conf.max_body_bytes, conf.max_otlp_body_bytes, conf.otlp_workers) == (10, 20, 2)
    limits = otlp_limits(conf)
    assert limits.max_body_bytes == 20 and limits.max_decoded_bytes == 64 * 1024 * 1024
    big = otlp_limits(ProxyConfig(max_otlp_body_bytes=100 * 1024 * 1024))
    assert (
        big.max_body_bytes == big.max_decoded_bytes == 100 * 1024 * 1024
    )  # a raw body passes both


def test_the_proxy_refuses_bodies_over_the_limits_its_flags_set(tmp_path):
    port = _free_port()
    with AnthropicServer() as up:
        path = _toml(tmp_path, f'[proxy]\nanthropic_upstream = "{up.base_url}"\n')
        cmd = [sys.executable, "-c", "from runtime.cli import main; raise SystemExit(main())",
               "--store", str(tmp_path / "store"), "proxy", "--config", str(path), "--port",
               str(port), "--max-body-bytes", "2000", "--max-otlp-body-bytes", "3000",
               "--otlp-workers", "0"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
        try:
            _status(f"http://127.0.0.1:{port}", proc)
            call = httpx2.post(f"http://127.0.0.1:{port}/v1/messages", timeout=10,
                               content=b'{"model":"x","messages":[],"pad":"' + b"a" * 2500 + b'"}')  # fmt: skip
            small = httpx2.post(f"http://127.0.0.1:{port}/v1/traces", timeout=10, content=b"x" * 2500,
                                headers={"content-type": "application/x-protobuf"})  # fmt: skip
            spans = httpx2.post(f"http://127.0.0.1:{port}/v1/traces", timeout=10, content=b"x" * 3500,
                                headers={"content-type": "application/x-protobuf"})  # fmt: skip
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    assert call.status_code == 413 and not up.requests  # never forwarded
    assert small.status_code == 401  # under the limit: read, and refused for want of a token
    assert spans.status_code == 413

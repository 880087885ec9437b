"""The ``llm386`` command line: one subcommand module per area, registered in COMMAND_MODULES."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runtime.cli.common import Output, to_json_text
from runtime.errors import Llm386Error

COMMAND_MODULES = [
    "runtime.cli.store_cmds",
    "runtime.cli.models_cmds",
    "runtime.cli.page_cmds",
    "runtime.cli.trace_cmds",
    "runtime.cli.agent_cmds",
    "runtime.cli.experiment_cmds",  # extends `replay`: after agent_cmds
    "runtime.cli.index_cmds",
    "runtime.cli.migrate_cmds",
    "runtime.cli.proxy_cmds",
    "runtime.cli.otel_cmds",
    "runtime.cli.copy_cmds",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="llm386", description="Inspect and drive an llm386 context store."
    )
    parser.add_argument(
        "--store",
        help="store folder (default: $LLM386_STORE, else $LLM386_HOME/store, else ./var/store: the store make run fills)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; print its output; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out: Output = args.func(args)
    except Llm386Error as exc:
        print(f"llm386: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llm386: interrupted", file=sys.stderr)
        return 130
    as_json = args.json or getattr(args, "json_after", False)
    text = to_json_text(out.data) if as_json else out.text
    try:
        if out.raw is not None and not as_json:
            sys.stdout.flush()  # anything printed before must not land after the bytes
            sys.stdout.buffer.write(out.raw)  # byte for byte: hashing stdout gives the prompt hash
            sys.stdout.buffer.flush()
        elif text:
            # A stored request may hold a lone surrogate (``"\\ud800"`` parses): print it escaped.
            print(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    except BrokenPipeError:  # `llm386 ... | head` closed the pipe: not an error
        sys.stderr.close()
    return 0

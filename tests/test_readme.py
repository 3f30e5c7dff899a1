"""The README as a user's guide: every command documented, every example command
line one the CLI accepts, install and quick start on the first screen, no diary."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cnn.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


def _example_lines() -> list[str]:
    """`cnn ...` lines of the README's code blocks: `$ cnn ...` and bash blocks."""
    lines, fence = [], None
    for line in README.splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence is None:
            continue
        text = line.strip()
        if text.startswith("$ cnn "):
            lines.append(text[2:])
        elif fence == "bash" and text.startswith("cnn "):
            lines.append(text.split("  #")[0].strip())
    return lines


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_commands_table(command):
    table = README.split("## The commands", 1)[1].split("\n### ", 1)[0]
    assert f"| `cnn {command}" in table, f"cnn {command} is missing from the README's table"


def test_every_example_line_parses():
    lines = _example_lines()
    assert len(lines) >= 8, lines  # the quick start's and the commands' examples
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing a line
            pytest.fail(f"the README's example {line!r} does not parse (exit {exc.code})")


def test_install_and_quick_start_come_first():
    head = "\n".join(README.splitlines()[:60])
    assert "## Install" in head and "pip install '.[cli]'" in head
    assert README.index("## Quick start") < README.index("## The commands")


def test_the_two_commands_are_what_ci_runs():
    assert "bash scripts/pipeline.sh" in README and "bash scripts/test.sh" in README
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_no_development_diary():
    diary = re.findall(r"\b(?:issue|session|phase) \d+", README, flags=re.IGNORECASE)
    assert not diary, diary


def test_outputs_name_their_commit_and_machine():
    assert re.search(r"commit `[0-9a-f]{7,}`", README)
    assert "lscpu" in README

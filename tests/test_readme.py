"""The README's quick start is exactly two commands, and CI runs the second one."""

import re

from conftest import REPO


def quick_start_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Quick start\s*\n\s*```(?:sh|bash)?\n(.*?)```", text, re.DOTALL)
    assert match, "README has no fenced block under 'Quick start'"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "python -m hpcapp" in commands[0] and "mpiexec" in commands[0]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()

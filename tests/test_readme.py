"""The README's quick start is exactly two commands, and CI runs the second one."""

import re

from helpers import REPO


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


def config_key_table():
    """Return {key: (TOML type, command line)} from the README's table of config-file keys."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("| key | TOML type | command line |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        match = re.fullmatch(r"\s*\| `(\w+)` \| (\w+) \| `([^`]*)`.* \|", line)
        if not match:
            break
        rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def test_readme_config_keys_are_the_declared_options():
    from hpcapp.jobs.config import CONFIG_KEYS, JobConfig
    from hpcapp.jobs.options import TOML_NAMES, declared

    documented = config_key_table()
    options = declared(JobConfig)
    assert list(documented) == [item.name for item in options] == list(CONFIG_KEYS)
    for item in options:
        kind, command_line = documented[item.name]
        assert kind == TOML_NAMES[item.kind], item.name
        # `-q/--quiet`, `-p KEY=VALUE`, `KERNEL`: the option's own flags, or its name.
        named = command_line.split()[0].split("/")
        assert set(named) <= set(item.option.flags or [item.name.upper()]), item.name


def tagged_examples():
    """Return (launch, code) of every README python block whose first line is '# example: ...'."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n# example: (.*?)\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 2, "the 'Use from Python' examples are gone"
    return blocks


def test_use_from_python_examples_run_as_written(tmp_path):
    import subprocess
    import sys

    from helpers import clean_env, mpiexec

    for index, (launch, code) in enumerate(tagged_examples()):
        script = tmp_path / f"example{index}.py"
        script.write_text(code)
        if launch == "python":
            command = [sys.executable, str(script)]
        else:
            match = re.fullmatch(r"mpiexec -n (\d+)", launch)
            assert match, f"unknown launch {launch!r}"
            command = [mpiexec(), "-n", match.group(1), sys.executable, str(script)]
        done = subprocess.run(
            command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"README example {index} ({launch}):\n{done.stderr}"
        assert done.stdout.strip(), f"README example {index} printed nothing"

"""Project hygiene that CI relies on: .ci/run runs the README's test command verbatim, the version is written
once, and the package declares its annotations (py.typed)."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("Install and run the whole test suite") :]
    return re.search(r"```sh\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command_first():
    command = readme_test_command()
    assert "pytest" in command
    steps = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "start=", "step", "}"))
    ]
    assert steps[0] == command, f".ci/run's first command is {steps[0]!r}, the README's {command!r}"


def test_the_version_is_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nnctl.__version__"}
    init = (ROOT / "nnctl" / "__init__.py").read_text(encoding="utf-8")
    assert re.search(r'^__version__ = "\d+\.\d+\.\d+"$', init, re.M)


def test_the_package_ships_py_typed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert (ROOT / "nnctl" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["nnctl"]

"""The package: pyproject.toml and the requirement files say the same, the install commands of
the README and CI install what the tests need, and an installed package runs its commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT, write_experiment
from packaging.requirements import Requirement

from grok.cli import resume_command
from grok.commands import sweep

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib

COMMANDS = ("grok-sweep", "grok-run", "grok-infer", "grok-report")
TEST_COMMAND = "pip install -r requirements-test.txt && python -m pytest -q"


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def read_requirements(name: str) -> tuple[set[str], list[str]]:
    """A requirement file's own requirements (normalized) and the files it includes (-r)."""
    own, included = set(), []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            included.append(line[3:].strip())
        else:
            own.add(str(Requirement(line)))
    return own, included


def normalized(requirements: list[str]) -> set[str]:
    return {str(Requirement(r)) for r in requirements}


def test_requirements_txt_is_pyprojects_dependencies():
    own, included = read_requirements("requirements.txt")
    assert own == normalized(project()["dependencies"])
    assert included == []


def test_requirements_tracking_txt_is_the_tracking_extra_over_the_main_job():
    own, included = read_requirements("requirements-tracking.txt")
    assert own == normalized(project()["optional-dependencies"]["tracking"])
    assert included == ["requirements.txt"]


def test_requirements_test_txt_is_the_test_and_interp_extras_over_the_trackers():
    extras = project()["optional-dependencies"]
    own, included = read_requirements("requirements-test.txt")
    assert own == normalized(extras["test"] + extras["interp"])
    assert included == ["requirements-tracking.txt"]


def test_the_main_job_installs_no_test_or_lint_tool():
    names = {Requirement(r).name for r in project()["dependencies"]}
    assert names == {
        "torch",
        "ray",
        "pyarrow",
        "numpy",
        "pandas",
        "matplotlib",
        "pyyaml",
        "optuna",
        "scipy",
    }
    tools = {Requirement(r).name for r in project()["optional-dependencies"]["test"]}
    assert {"pytest", "hypothesis", "ruff", "moto"} <= tools


def test_every_torch_pin_admits_the_local_cpu_build_and_no_newer_release():
    extras = project()["optional-dependencies"]
    pins = [r for r in project()["dependencies"] if Requirement(r).name == "torch"]
    assert len(pins) == 1 and not any(
        Requirement(r).name == "torch" for group in extras.values() for r in group
    )
    spec = Requirement(pins[0]).specifier
    assert spec.contains("2.13.0") and not spec.contains("2.14.0")


def test_the_readme_and_ci_install_the_test_requirements_before_the_tests():
    readme = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    main_job, tests = readme.strip().splitlines()
    assert main_job.startswith("pip install -r requirements.txt && python tune_main.py ")
    assert (
        tests.split("#")[0].strip() == "pip install -r requirements-test.txt && python -m pytest -q"
    )
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "pip install -r requirements-test.txt && python -m pytest -q"


def test_the_commands_are_the_packages_own_functions():
    scripts = project()["scripts"]
    assert tuple(scripts) == COMMANDS
    assert scripts["grok-run"] == "grok.run:main"
    assert scripts["grok-report"] == "plotting.report:main"


def test_grok_sweep_turns_on_tunes_console_output_and_names_itself_in_the_resume_line(
    tmp_path, monkeypatch, capsys
):
    path = write_experiment(tmp_path / "two.yaml", "two", grid={"seed": [0, 1]})
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    monkeypatch.setattr(sys, "argv", ["grok-sweep", str(path), "--dry-run"])
    assert sweep.cli() == 0
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "1"
    assert capsys.readouterr().out.startswith("two: 2 trials")
    words = [str(path), "--fresh", "--set", "train.steps=5"]
    again = f"grok-sweep {path} --set train.steps=5 --resume"
    assert resume_command(["grok-sweep"], words) == again
    assert resume_command(list(sweep.SCRIPT), words) == f"python tune_main.py {again[11:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package installed, without its dependencies, into a fresh virtual environment that
    sees this interpreter's packages (torch, Ray, ...): its bin folder. Built from a copy, so
    the repository gets no build folder."""
    tmp = tmp_path_factory.mktemp("install")
    source = shutil.copytree(
        ROOT,
        tmp / "source",
        ignore=shutil.ignore_patterns(".git", "report", "results", "runs", "__pycache__", ".*"),
    )
    env = tmp / "venv"
    venv.create(env, system_site_packages=True)  # pip and setuptools: this interpreter's
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*pip, "--no-index", "--quiet", str(source)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env / "bin"


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_each_installed_command_prints_its_help(installed, command, tmp_path):
    proc = subprocess.run(
        [str(installed / command), "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    prog = "python -m plotting.report" if command == "grok-report" else command
    assert proc.stdout.startswith(f"usage: {prog} ")


@pytest.mark.slow
def test_the_installed_package_holds_the_library_and_plotting_only(installed, tmp_path):
    code = (
        "import importlib.metadata as m, json, grok.commands.sweep, plotting.report; "
        "print(grok.commands.sweep.__file__); "
        "print(json.dumps(sorted(str(f) for f in m.files('grok-sweeps'))))"
    )
    proc = subprocess.run(
        [str(installed / "python"), "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, listing = proc.stdout.strip().splitlines()
    assert Path(where).is_relative_to(installed.parent)  # the installed copy, not the clone
    files = json.loads(listing)
    tops = {Path(f).parts[0] for f in files if not f.startswith("..")}
    assert tops == {"grok", "plotting", "grok_sweeps-0.1.0.dist-info"}
    assert "grok/commands/sweep.py" in files and "plotting/report.py" in files
    scripts = sorted(Path(f).name for f in files if f.startswith(".."))
    assert scripts == sorted(COMMANDS)

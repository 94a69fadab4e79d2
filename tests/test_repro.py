"""The reproduction files of experiments/repro/: one experiment per published claim.

Each file must load as an experiment (every grid point checked, nothing trained, no Ray), say in
its header comment where the claim comes from (an arXiv id or a URL), what the claim is (a
`Claim:` line) and what it costs here (a `Budget here:` line), compare every setting over at
least three seeds, ask for one CPU per trial, and have a name no other experiment file uses.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from grok.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
REPRO = sorted((ROOT / "experiments" / "repro").glob("*.yaml"))
ALL = sorted((ROOT / "experiments").glob("*.yaml")) + REPRO

ARXIV = re.compile(r"arXiv[:\s]*\d{4}\.\d{4,5}", re.IGNORECASE)
URL = re.compile(r"https?://\S+|github\.com/\S+")


def header(path: Path) -> str:
    """The comment block the file opens with, without the leading '#'s."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return "\n".join(lines)


def raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def name_of(path: Path) -> str:
    return raw(path).get("name") or path.stem


def test_there_are_reproduction_files():
    assert len(REPRO) >= 9, [p.name for p in REPRO]


@pytest.mark.parametrize("path", REPRO, ids=lambda p: p.stem)
def test_file_loads_as_an_experiment(path):
    analysis = (raw(path).get("config") or {}).get("analysis") or {}
    if analysis.get("llc") and importlib.util.find_spec("devinterp") is None:
        pytest.skip("analysis.llc needs devinterp: pip install '.[interp]'")
    exp = load_experiment(path)
    assert exp.name == name_of(path)
    assert exp.num_trials >= 3
    assert exp.resources.as_dict() == {"cpu": 1.0, "gpu": 0.0}


@pytest.mark.parametrize("path", REPRO, ids=lambda p: p.stem)
def test_header_names_its_source_claim_and_budget(path):
    text = header(path)
    assert text, f"{path.name}: no header comment"
    assert ARXIV.search(text) or URL.search(text), f"{path.name}: no arXiv id or URL"
    assert re.search(r"^Claim:", text, re.MULTILINE), f"{path.name}: no 'Claim:' line"
    assert re.search(r"^Budget here:", text, re.MULTILINE), f"{path.name}: no 'Budget here:'"


@pytest.mark.parametrize("path", REPRO, ids=lambda p: p.stem)
def test_every_grid_has_at_least_three_seeds(path):
    grid = raw(path).get("grid") or {}
    seeds = grid.get("seed") or []
    assert len(set(seeds)) >= 3, f"{path.name}: grid.seed {seeds}"


def test_names_are_unique_across_experiment_files():
    names = [name_of(p) for p in ALL]
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, repeated
    assert all(name_of(p).startswith("repro_") for p in REPRO)

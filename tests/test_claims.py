"""The report's Reproductions section (plotting/claims.py) and the study file's claims."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT
from test_plotting import wd_experiment

from grok.schema import ConfigError
from plotting import report
from plotting.study import VERDICTS, load_study

CLAIM = {
    "experiment": "ablation_wd",
    "paper": "Someone et al. 2020",
    "claim": "Fig. 9: weight decay makes it grok",
    "setting": "wd 0.1 and 1, 3 seeds",
    "verdict": "partly",
    "reading": "Two of three runs at wd 1 grokked.",
    "measures": ["grok", "ratio", "final:param_norm", "peak:test/acc"],
}


def study_file(tmp_path, claims, file="experiments/elsewhere/abl.yaml"):
    entries = [{"name": "ablation_wd", "file": file}, {"name": "later", "run": False}]
    body = {"title": "T", "parts": [{"title": "1. P", "experiments": entries}], "claims": claims}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_the_table_follows_the_summary_with_ours_computed_from_the_runs(tmp_path):
    root = tmp_path / "results"
    wd_experiment(root)
    out = tmp_path / "report"
    out.mkdir()
    (out / "summary.md").write_text("It groks.")
    later = {**CLAIM, "experiment": "later", "verdict": "not run yet", "reading": ""}
    study = study_file(tmp_path, [CLAIM, later])
    assert report.main([str(root), "--out", str(out), "--study", str(study)]) == 0
    text = (out / "REPORT.md").read_text()
    assert text.index("## Summary") < text.index("## Reproductions") < text.index("## 1. P")
    table = text[text.index("## Reproductions") : text.index("### 1.")]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 2
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:3] == ["1. Someone et al. 2020", CLAIM["claim"], CLAIM["setting"]]
    ours = cells[3]
    # The hand-known crossings of wd_experiment: at wd 0.1 one seed at 900 and two censored,
    # one of them errored before any report; at wd 1 two at 300 and 400, one censored at 200.
    # (the errored one has no best test accuracy)
    assert (
        "wd=0.1: test 99% at 900 (1 seed); 2 censored (not by 1000, no report; best test 0.5)"
        in ours
    )
    assert "wd=1: test 99% at 350 ± 71 (2 seeds); 1 censored (not by 200; best test 0.2)" in ours
    # test over train step: 900/200; 300/100 and 400/100; a censored run bounds it below
    assert "wd=0.1: test/train step 4.5 (1 seed); 1 censored (ratio > 5)" in ours
    assert "wd=1: test/train step 3.5 ± 0.707 (2 seeds); 1 censored (ratio > 2)" in ours
    assert "wd=1: last param_norm" in ours and "wd=1: step of the peak of test/acc" in ours
    assert cells[4:6] == ["partly", "`python tune_main.py experiments/elsewhere/abl.yaml`"]
    assert cells[6].endswith("core-h, 6 runs")
    assert [c.strip() for c in rows[1].strip("|").split("|")][3:5] == ["not run yet"] * 2
    assert "### 1. Someone et al. 2020: partly\n\n![ablation_wd grok_steps](" in text
    assert (out / "ablation_wd_grok_steps.png").is_file()
    section = text[text.index("## Reproductions") : text.index("## 1. P")]
    assert CLAIM["reading"] in section and "### 2. Someone et al. 2020: not run yet" in section
    # an experiment the study names but that is missing gives its own file's command
    assert "`python tune_main.py experiments/later.yaml`, then rebuild" in text


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"verdict": "sort of"}, "verdict 'sort of' is not one of " + ", ".join(VERDICTS)),
        ({"experiment": "nosuch"}, "nosuch is not an experiment of the study"),
        ({"measures": ["final:"]}, "measures is a list of grok, ratio, final:METRIC"),
        ({"figure": "pie"}, "figure 'pie' is not one of"),
        ({"paper": ""}, "paper is a non-empty string"),
        ({"typo": 1}, "typo"),
    ],
)
def test_a_bad_claim_is_one_line_naming_it(tmp_path, change, fragment):
    with pytest.raises(ConfigError, match="claims\\[0\\]") as err:
        load_study(study_file(tmp_path, [{**CLAIM, **change}]))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_the_committed_study_has_a_claim_per_reproduction_file_with_a_verdict():
    study = load_study(ROOT / "report" / "study.yaml")
    files = {study.entry(c.experiment).file for c in study.claims}
    assert files == {f"experiments/repro/{p.name}" for p in (ROOT / "experiments/repro").glob("*")}
    assert all(c.verdict in VERDICTS for c in study.claims)
    text = (ROOT / "report" / "REPORT.md").read_text()
    section = text[text.index("## Reproductions") : text.index("\n## 1.")]
    assert text.index("## Summary") < text.index("## Reproductions")
    for n, claim in enumerate(study.claims, 1):
        assert f"| {n}. {claim.paper} |" in section
        assert f"### {n}. {claim.paper}: {claim.verdict}" in section


def test_a_reproduction_is_queued_by_name_with_its_own_file_and_estimated():
    from plotting.study import main

    assert main(["report/study.yaml", "repro_llc_grokking"]) == 0
    assert main(["report/study.yaml", "--estimate", "repro_llc_grokking"]) == 0
    study = load_study(ROOT / "report" / "study.yaml")
    assert [e.file for e in study.only(["repro_llc_grokking"])] == [
        "experiments/repro/llc_grokking.yaml"
    ]
    assert not [e for e in study.only([]) if e.file.startswith("experiments/repro/")]

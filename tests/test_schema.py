"""The settings under generated input: every setting refuses what its declaration excludes and
keeps what it allows, from every place a value can come from; any bytes or YAML given as an
experiment file end in the project's error or an experiment; each kind of unreadable file is one
line and exit status 2 from the commands that read them."""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from conftest import TINY, assert_one_line_error, rewrite_manifest, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from grok.config import SETTINGS, Config
from grok.experiment import EXPERIMENT_KEYS, Experiment, Resources, TuneOptions, load_experiment
from grok.overrides import check_setting, dump_config, load_config, parse_set, set_dotted
from grok.schema import RULES, ConfigError, Setting, build, get_dotted, options, read_mapping
from grok.schema import settings as declared
from grok.search import DISTRIBUTIONS, SEARCH_KEYS
from grok.train import Trainer

# The experiment file's other declared sections, read by the same builder.
SECTIONS = {"resources": Resources, "tune": TuneOptions}
OTHERS = {k: s for name, cls in SECTIONS.items() for k, s in declared(cls, name + ".").items()}
# The whole-file tests are cheap and have the most to find: more examples than the profile's.
FUZZ = settings(max_examples=8 * settings().max_examples)
ROUTES = ("config", "set", "grid", "search")  # where a setting's value can come from


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("schema")


def nested(key: str, value: Any) -> dict:
    data: dict = {}
    set_dotted(data, key, value, "test")
    return data


def as_set_value(value: Any) -> str:
    """`value` written as YAML on one line, as a user would type it after `--set key=`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf)
    return text.removesuffix("\n").removesuffix("\n...")


def same(a: Any, b: Any) -> bool:
    return a == b or (a != a and b != b)  # NaN is itself here


def write_experiment_with(folder: Path, key: str, value: Any, route: str) -> tuple[Path, list]:
    """An experiment file (and --set items) that give setting `key` the value `value`."""
    doc: dict[str, Any] = {"name": "generated"}
    sets = []
    if key in OTHERS:
        doc.update(nested(key, value))
    elif route == "config":
        doc["config"] = nested(key, value)
    elif route == "set":
        item = f"{key}={as_set_value(value)}"
        assert same(parse_set(item)[1], value)  # --set reads back what was written
        sets.append(item)
    elif route == "grid":
        doc["grid"] = {key: [value]}
    else:
        doc["search"] = {"space": {key: {"choice": [value]}}}
    path = folder / "generated.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, sets


# ---------------------------------------------------------------- values a declaration allows


def int_bounds(spec: tuple | None) -> tuple[int | None, int | None]:
    """The smallest and largest integer a range takes."""
    if spec is None:
        return None, None
    lo, hi, lo_open, hi_open = spec
    lo_i = None if lo is None else (math.floor(lo) + 1 if lo_open else math.ceil(lo))
    hi_i = None if hi is None else (math.ceil(hi) - 1 if hi_open else math.floor(hi))
    return lo_i, hi_i


def inside(s: Setting) -> st.SearchStrategy:
    """Values the declaration of `s` accepts."""
    parts = []
    for option in options(s.type):
        if typing.get_origin(option) is Literal:
            parts.append(st.sampled_from(typing.get_args(option)))
        elif option is type(None):
            parts.append(st.none())
        elif option is bool:
            parts.append(st.booleans())
        elif option is str:
            parts.append(st.text())
        elif option is int:
            parts.append(st.integers(*int_bounds(s.range)))
        elif option is float:
            lo, hi, lo_open, hi_open = s.range
            parts.append(
                st.floats(
                    lo,
                    hi,
                    exclude_min=lo_open and lo is not None,
                    exclude_max=hi_open and hi is not None,
                    allow_nan=False,
                    allow_infinity=False,
                )
            )
            lo_i, hi_i = int_bounds(s.range)  # YAML's `1` for 1.0
            lo_i = -(2**53) if lo_i is None else max(lo_i, -(2**53))
            hi_i = 2**53 if hi_i is None else min(hi_i, 2**53)
            parts.append(st.integers(lo_i, hi_i))
        else:
            raise AssertionError(f"{s.key}: no values generated for {option}")
    return st.one_of(parts)


# ---------------------------------------------------------------- values it refuses


def is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def outside(s: Setting) -> st.SearchStrategy:
    """Values the declaration of `s` refuses: a wrong type, a number out of its range, text
    that is not one of its choices."""
    kinds = options(s.type)
    numeric = int in kinds or float in kinds
    parts = [
        st.lists(st.integers(), min_size=1, max_size=3),  # never a setting's value
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ]
    if bool not in kinds:
        parts.append(st.booleans())
    if type(None) not in kinds:
        parts.append(st.none())
    if str not in kinds:
        text = st.text().filter(lambda t: t not in s.choices)
        parts.append(text.filter(lambda t: not is_number_text(t)) if numeric else text)
    if not numeric:
        parts += [st.integers(), st.floats()]
    if int in kinds and float not in kinds:
        fractional = st.tuples(st.integers(-(10**9), 10**9), st.floats(0.01, 0.99))
        parts.append(fractional.map(sum))
    if numeric:
        parts.append(st.sampled_from([math.nan, math.inf, -math.inf]))
        lo, hi, lo_open, hi_open = s.range
        if lo is not None:
            below = st.floats(max_value=lo, exclude_max=not lo_open, allow_nan=False)
            parts.append(below.filter(math.isfinite))
            parts.append(st.integers(max_value=math.ceil(lo) - (0 if lo_open else 1)))
        if hi is not None:
            above = st.floats(min_value=hi, exclude_min=not hi_open, allow_nan=False)
            parts.append(above.filter(math.isfinite))
            parts.append(st.integers(min_value=math.floor(hi) + (0 if hi_open else 1)))
    return st.one_of(parts)


# ---------------------------------------------------------------- the properties


def test_every_setting_declares_what_it_accepts():
    """Numbers carry a range, and every member of a setting's type is one the checker knows."""
    for s in {**SETTINGS, **OTHERS}.values():
        kinds = options(s.type)
        if int in kinds or float in kinds:
            assert s.range is not None, f"{s.key} declares no range"
        for option in kinds:
            known = (int, float, bool, str, type(None))
            assert option in known or typing.get_origin(option) is Literal, s.key
    assert SETTINGS["train.batch_size"].range[0] == 1  # a batch of 0 was once accepted


@pytest.mark.parametrize("key", sorted({**SETTINGS, **OTHERS}))
@given(data=st.data())
def test_a_value_outside_a_setting_is_refused_naming_the_key(folder, key, data):
    s = {**SETTINGS, **OTHERS}[key]
    value = data.draw(outside(s), label="value")
    route = data.draw(st.sampled_from(ROUTES), label="route")
    path, sets = write_experiment_with(folder, key, value, route)
    with pytest.raises(ConfigError) as err:
        load_experiment(path, sets)
    message = str(err.value)
    assert key in message and "\n" not in message, message


@pytest.mark.parametrize("key", sorted(SETTINGS))
@given(data=st.data())
def test_a_value_inside_a_setting_is_kept_through_the_resolved_config(folder, key, data):
    value = data.draw(inside(SETTINGS[key]), label="value")
    checked = check_setting(key, value, "test")
    cfg = build(Config, nested(key, value), "test")  # the declaration alone accepts it
    assert same(get_dotted(cfg, key), checked)
    resolved = folder / "config.yaml"
    resolved.write_text(dump_config(cfg))
    assert build(Config, read_mapping(resolved), "test") == cfg
    # The cross-field rules may refuse it with the other settings at their defaults, but only
    # a rule that reads this setting.
    broken = [rule for rule in RULES if rule.problem(cfg)]
    assert all(key in rule.keys for rule in broken), broken
    route = data.draw(st.sampled_from(ROUTES[:3]), label="route")
    path, sets = write_experiment_with(folder, key, value, route)
    if broken:
        with pytest.raises(ConfigError, match=r"\." if "." in key else key):
            load_experiment(path, sets)
        with pytest.raises(ConfigError):
            load_config(resolved)
        return
    assert load_config(resolved) == cfg
    exp = load_experiment(path, sets)
    assert exp.config(next(exp.points())) == cfg


# ---------------------------------------------------------------- any file at all

SCHEMA_WORDS = [
    *EXPERIMENT_KEYS,
    *SETTINGS,
    *{k.split(".")[0] for k in SETTINGS},
    *SEARCH_KEYS,
    *DISTRIBUTIONS,
    "cpu",
    "gpu",
    "num_to_keep",
    "max_concurrent",
    "name",
    "step",
    "acc",
    "grace_period",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["full", "/", "+", "char", "text", "lines", "ema", "asha", "val/acc"]),
)
keys = st.one_of(st.sampled_from(SCHEMA_WORDS), st.text(max_size=6), st.integers())
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
experiments = st.dictionaries(st.sampled_from(EXPERIMENT_KEYS), documents, max_size=6)


def load_or_refuse(path: Path) -> None:
    """Only two outcomes are allowed: an experiment, or the project's one-line error."""
    try:
        assert isinstance(load_experiment(path), Experiment)
    except ConfigError as err:
        assert "\n" not in str(err) and str(path) in str(err)


@FUZZ
@given(content=st.binary(max_size=300))
def test_random_bytes_as_an_experiment_file_end_in_the_projects_error(folder, content):
    path = folder / "bytes.yaml"
    path.write_bytes(content)
    load_or_refuse(path)


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_as_an_experiment_file_ends_in_the_projects_error(folder, text):
    path = folder / "text.yaml"
    path.write_text(text, encoding="utf-8")
    load_or_refuse(path)


@FUZZ
@given(document=experiments | documents)
def test_random_yaml_documents_as_experiment_files_end_in_the_projects_error(folder, document):
    path = folder / "document.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    load_or_refuse(path)


# ---------------------------------------------------------------- each command, each bad file

BAD_FILES = {
    "not UTF-8": (b"config: {task: {p: 97}}\n\xff\xfe\x00\x81", "not a text file"),
    "empty": (b"", "is empty"),
    "not YAML": (b"config: {task: {p: 97}\n", "not valid YAML at line"),
    "not a mapping": (b"- 1\n- 2\n", "holds a list, not a mapping"),
    "a folder": (None, "is a folder"),
}


def bad_file(path: Path, kind: str) -> Path:
    content = BAD_FILES[kind][0]
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint (a few steps), for the commands that read a checkpoint's config."""
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "steps": 2}})
    trainer = Trainer(cfg)
    trainer.fit()
    return trainer.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint")


# One run per kind of bad experiment file, spread over the commands that read them.
EXPERIMENT_COMMANDS = {
    "not UTF-8": ["tune_main.py", "{}", "--dry-run"],
    "empty": ["-m", "grok.train", "{}", "--out", "{out}"],
    "not YAML": ["-m", "grok.data", "{}", "--out", "{out}"],
    "not a mapping": ["tune_main.py", "{}", "--storage", "{out}"],
    "a folder": ["-m", "grok.train", "{}", "--out", "{out}"],
}


@pytest.mark.parametrize("kind", list(EXPERIMENT_COMMANDS))
def test_each_command_refuses_a_bad_experiment_file_in_one_line(tmp_path, kind):
    path = bad_file(tmp_path / "exp.yaml", kind)
    out = tmp_path / "out"
    args = [a.format(path, out=out) for a in EXPERIMENT_COMMANDS[kind]]
    assert_one_line_error(run_cli(*args), str(path), BAD_FILES[kind][1])
    assert not out.exists()


@pytest.mark.parametrize(
    "command, kind",
    [
        (["infer.py", "{}", "--prompt", "1+2="], "not a mapping"),
        (["-m", "grok.export", "{}", "--out", "{out}"], "not UTF-8"),
    ],
)
def test_a_checkpoint_with_a_bad_config_file_is_refused_in_one_line(
    tmp_path, checkpoint, command, kind
):
    """Even with a manifest forged to match it, the config.yaml is read by the same reader."""
    copy = tmp_path / "checkpoint"
    copy.mkdir()
    for f in checkpoint.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "config.yaml").unlink()
    bad_file(copy / "config.yaml", kind)
    rewrite_manifest(copy)
    out = tmp_path / "out"
    proc = run_cli(*[a.format(copy, out=out) for a in command])
    assert_one_line_error(proc, "config.yaml", BAD_FILES[kind][1])
    assert not out.exists()


def test_plotting_refuses_a_results_folder_whose_record_is_not_a_mapping(tmp_path):
    results = tmp_path / "results" / "e"
    results.mkdir(parents=True)
    bad_file(results / "experiment.yaml", "not a mapping")
    proc = run_cli("-m", "plotting.curves", str(results))
    assert_one_line_error(proc, "experiment.yaml", BAD_FILES["not a mapping"][1])

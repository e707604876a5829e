"""Settings: one declaration drives validation, provenance, the flags' help and overrides, and
configs/example.yaml; these tests hold the declaration to each of them."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from rlm_cli.config import (
    DEFAULTS,
    FIELD_NAMES,
    FILE_ONLY,
    FLAG_PARAMS,
    FLAGS,
    HIDDEN,
    SPECS,
    Settings,
    example_yaml,
    flag_kind,
    load_settings,
    overrides_from_flags,
    setting_help,
)
from rlm_cli.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "configs" / "example.yaml"
# A setting's line in example.yaml: `# name: value`, commented out so the default applies.
SETTING_LINE = re.compile(r"^# ([a-z_]+): (.*)$")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rlm.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_checked_in_example_is_the_generated_one() -> None:
    """Regenerate with `python -m rlm_cli.config --example > configs/example.yaml`."""
    assert EXAMPLE.read_text(encoding="utf-8") == example_yaml()


def test_every_setting_is_in_the_example_once_with_its_help_default_and_flag() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    named = [m.group(1) for line in text.splitlines() if (m := SETTING_LINE.match(line))]
    assert sorted(named) == sorted(FIELD_NAMES)
    flat = " ".join(line.lstrip("# ") for line in text.splitlines())
    for name, spec in SPECS.items():
        assert " ".join(spec.help.split()) in flat, name
        where = f"Flag: {spec.flag}." if spec.flag else "Config file only (no flag)."
        assert where in text, name


def test_the_example_loads_as_it_is_and_with_every_setting_uncommented(tmp_path: Path) -> None:
    assert load_settings({}, EXAMPLE) == Settings()  # everything commented: the defaults
    lines = [line[2:] if SETTING_LINE.match(line) else line for line in example_yaml().split("\n")]
    settings = load_settings({}, write(tmp_path, "\n".join(lines)))
    for name in FIELD_NAMES:
        assert settings.origin[name] == f"config file {tmp_path / 'rlm.yaml'}"
        if DEFAULTS[name] not in (None, ()):
            assert getattr(settings, name) == DEFAULTS[name], name
    assert settings.include == ("*.py", "docs/**")  # a YAML list, kept as a tuple
    assert settings.script == str(tmp_path / "replies.yaml")  # relative to the file
    hash(settings)


def test_the_scripted_demo_config_loads() -> None:
    settings = load_settings({}, ROOT / "configs" / "scripted-demo.yaml")
    assert settings.provider == "scripted"
    assert settings.script is not None and Path(settings.script).resolve().is_file()


def test_every_setting_has_a_flag_or_is_file_only_and_the_flags_are_distinct() -> None:
    assert set(FLAGS) | set(FILE_ONLY) == FIELD_NAMES
    assert not set(FLAGS) & set(FILE_ONLY)
    assert FILE_ONLY == ("confirm_above_usd",)
    assert len(set(FLAGS.values())) == len(FLAGS)
    assert sorted(FLAG_PARAMS.values()) == sorted(FLAGS)
    assert FLAGS["cache"] == "--no-cache" and FLAGS["worker_memory_mb"] == "--worker-memory"


def _ask_options() -> dict[str, Any]:
    import typer.main

    from rlm_cli.cli import app

    command = typer.main.get_command(app)
    ask = command.commands["ask"]  # type: ignore[attr-defined]
    return {opt: param for param in ask.params for opt in param.opts}


def test_every_flag_of_a_setting_is_an_option_of_ask_of_the_right_kind() -> None:
    options = _ask_options()
    for name, flag in FLAGS.items():
        assert flag in options, f"rlm ask has no {flag} for setting {name}"
        switch = flag_kind(name) in ("on", "off")
        assert options[flag].is_flag == switch, flag
        assert options[flag].multiple == (flag_kind(name) == "repeat"), flag


def test_the_help_of_each_settings_flag_is_its_declared_help() -> None:
    options = _ask_options()
    for name, flag in FLAGS.items():
        assert setting_help(name) in " ".join((options[flag].help or "").split()), flag


@pytest.mark.parametrize("name", sorted(FIELD_NAMES))
def test_every_setting_refuses_a_value_of_another_type(name: str) -> None:
    """Each type is read from the annotation, so a new setting is checked with no new code."""
    kind = flag_kind(name)
    wrong = {"on": 1, "off": 1, "repeat": "*.py"}.get(kind)
    if wrong is None:
        wrong = 7 if typing.get_type_hints(Settings)[name] in (str, str | None) else "x"
    with pytest.raises(ConfigError, match=f"setting {name}: must be "):
        load_settings({name: wrong})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_depth": 9}, "--max-depth 9: setting max_depth: must be between 1 and 5"),
        ({"sandbox": "docker"}, "--sandbox 'docker': setting sandbox: must be process or none"),
        (
            {"reasoning_effort": "max"},
            "--reasoning-effort 'max': setting reasoning_effort: must be low, medium or high",
        ),
        ({"max_cost": 0}, "--max-cost 0: setting max_cost: must be more than 0"),
        (
            {"request_timeout": 0},
            "--request-timeout 0: setting request_timeout: must be more than 0 and at most 3600 "
            "seconds",
        ),
        (
            {"worker_memory_mb": 100},
            "--worker-memory 100: setting worker_memory_mb: must be at least 256 MiB",
        ),
        ({"max_memory_share": 0.95}, "must be more than 0 and at most 0.9"),
        ({"output_limit": 999}, "must be between 1000 and 10000000"),
        ({"temperature": -0.1}, "must be between 0 and 2"),
        ({"max_iterations": 1.5}, "--max-iterations 1.5: setting max_iterations: must be a whole"),
        ({"cache": "yes"}, "setting cache: must be true or false"),
        ({"include": "*.py"}, "setting include: must be a list of strings"),
    ],
)
def test_a_bad_flag_names_the_flag_the_value_the_setting_and_what_it_takes(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides)
    assert message in str(caught.value)


def test_an_unknown_key_names_the_file_the_key_and_the_closest_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "max-iteratons: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, path)
    assert str(caught.value) == (
        f"{path}: unknown setting 'max-iteratons'; did you mean 'max_iterations'?"
    )
    path = write(tmp_path, "zzz: 1\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'zzz'; configs/example\.yaml lists every setting"
    ):
        load_settings({}, path)


def test_a_bad_value_in_a_config_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "max-iterations: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, path)
    assert str(caught.value) == (
        f"config file {path} (max_iterations: 0): setting max_iterations: must be between 1 and "
        "1000"
    )
    path = write(tmp_path, "max_retries: '3'\n")
    with pytest.raises(ConfigError, match=r"\(max_retries: '3'\): .* must be a whole number"):
        load_settings({}, path)


def test_a_file_only_setting_from_a_library_argument_is_named_as_an_argument() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"confirm_above_usd": -1}, source="argument")
    assert str(caught.value) == (
        "confirm_above_usd=-1 (argument): setting confirm_above_usd: must be at least 0"
    )


def test_a_key_pasted_as_a_value_is_never_echoed() -> None:
    key = "sk-proj-" + "a1B2c3D4" * 4
    with pytest.raises(ConfigError) as caught:
        load_settings({"api_key_env": key})
    assert key not in str(caught.value)
    assert "--api-key-env takes the NAME of an environment variable" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings({"max_retries": key})
    assert key not in str(caught.value) and HIDDEN in str(caught.value)


def test_a_bool_is_not_a_number_but_a_whole_number_is_a_float(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_iterations: must be a whole number"):
        load_settings({}, write(tmp_path, "max_iterations: true\n"))
    assert load_settings({}, write(tmp_path, "cell_timeout: 30\n")).cell_timeout == 30


def test_flags_win_over_the_file_and_each_value_says_where_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, "max_iterations: 5\nmax_depth: 2\nexclude: [tests/]\n")
    settings = load_settings({"max_iterations": 7, "model": None}, path)
    assert (settings.max_iterations, settings.max_depth, settings.model) == (7, 2, None)
    assert settings.exclude == ("tests/",)
    assert settings.origin == {
        "max_iterations": "flag",
        "max_depth": f"config file {path}",
        "exclude": f"config file {path}",
    }
    assert settings.source("max_iterations") == "--max-iterations"
    assert settings.source("max_depth") == f"max_depth (config file {path})"
    assert settings.source("timeout") == "timeout (default)"


def test_settings_are_frozen_hashable_and_valid_however_they_are_made() -> None:
    settings = Settings(include=["*.py"])  # type: ignore[arg-type]
    assert settings.include == ("*.py",)
    assert hash(settings) == hash(Settings(include=("*.py",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_depth = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="setting max_depth"):
        dataclasses.replace(settings, max_depth=0)


def test_public_settings_hold_every_setting_and_hide_keys() -> None:
    public = load_settings({"base_url": "https://x/?key=sk-" + "Z" * 30}).public()
    assert set(public) == FIELD_NAMES | {"root_model", "worker_model"}
    assert public["base_url"] == HIDDEN and public["include"] == []  # as JSON reads it back


def test_overrides_from_flags_maps_flag_values_to_settings() -> None:
    given = {
        "max_cost": 2.5,
        "model": None,  # not given
        "no_cache": True,
        "strict": False,  # a switch left off overrides nothing (a config file's true stays)
        "cache_root": True,
        "include": ["*.py", "*.md"],
        "exclude": [],  # a repeatable flag not given
        "worker_memory": 512,
    }
    assert overrides_from_flags(given) == {
        "max_cost": 2.5,
        "cache": False,
        "cache_root": True,
        "include": ("*.py", "*.md"),
        "worker_memory_mb": 512,
    }
    assert load_settings(overrides_from_flags({"no_cache": False})).cache is True
    with pytest.raises(ValueError, match="max_costs"):
        overrides_from_flags({"max_costs": 1})


def test_setting_help_says_the_default() -> None:
    assert setting_help("max_iterations").endswith("Default: 30.")
    assert setting_help("cell_timeout").endswith("Default: 120.")
    assert setting_help("strict").endswith("Default: off.")
    assert setting_help("cache").endswith("Default: on; --no-cache turns it off.")
    assert setting_help("max_file_size").endswith("Default: 100MiB.")
    for name in FIELD_NAMES:
        help_text = setting_help(name)
        assert help_text.count("Default:") == 1 and help_text.endswith("."), name


def test_importing_config_leaves_yaml_unloaded() -> None:
    """yaml costs about 10 ms to import; only a config file needs it."""
    code = "import sys, rlm_cli.config; print('yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

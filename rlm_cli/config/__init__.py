"""Settings: one declaration per setting, validated values, where each came from, and the config
file that may supply them.

Each `Settings` field declares in one place (`spec.setting`) its type (the annotation), default,
help, flag (or that only a config file or a library argument sets it) and bounds or choices.
Validation, the CLI's flag help and overrides (`flags.py`) and configs/example.yaml
(`example_yaml`) are all derived from it, so none can drift from the others.

Load order, later wins: built-in defaults < config file < command-line flags (or library arguments).
The config file is `--config FILE`, else `$RLM_CONFIG`, else `$XDG_CONFIG_HOME/rlm/config.yaml`
(`~/.config/rlm/config.yaml`) when it exists. Unknown keys are errors, never ignored.
"""

from rlm_cli.config.files import default_config_path, example_yaml, load_settings, read_config_file
from rlm_cli.config.flags import (
    FlagKind,
    default_text,
    flag_kind,
    overrides_from_flags,
    setting_help,
)
from rlm_cli.config.settings import (
    DEFAULT_MODELS,
    DEFAULT_SUB_MODELS,
    DEFAULTS,
    FIELD_NAMES,
    FILE_ONLY,
    FLAG_PARAMS,
    FLAGS,
    KEY_ENV_SETTINGS,
    PATH_SETTINGS,
    SANDBOXES,
    SPECS,
    Settings,
    public_values,
)
from rlm_cli.config.spec import (
    ENV_NAME,
    HIDDEN,
    KEY_PATTERN,
    Spec,
    is_env_name,
    looks_like_key,
    mask_keys,
)

__all__ = [
    "DEFAULTS",
    "DEFAULT_MODELS",
    "DEFAULT_SUB_MODELS",
    "ENV_NAME",
    "FIELD_NAMES",
    "FILE_ONLY",
    "FLAGS",
    "FLAG_PARAMS",
    "HIDDEN",
    "KEY_ENV_SETTINGS",
    "KEY_PATTERN",
    "PATH_SETTINGS",
    "SANDBOXES",
    "SPECS",
    "FlagKind",
    "Settings",
    "Spec",
    "default_config_path",
    "default_text",
    "example_yaml",
    "flag_kind",
    "is_env_name",
    "load_settings",
    "looks_like_key",
    "mask_keys",
    "overrides_from_flags",
    "public_values",
    "read_config_file",
    "setting_help",
]

"""Configuration: one YAML file, overridable from the command line, checked against one schema.

A config file holds up to three YAML documents (model-zoo layout):
  1. the values,
  2. optional help text per key,
  3. optional choices per key (they must agree with the schema below).

Every key below has an effect somewhere in the project; `SCHEMA` is the single list of them.
`get_config()` loads `--config_path` (default: cpu_config.yaml at the repo root), applies
`--key=value` overrides (lists as YAML: `--bottom_mlp_args='[512,256,64,16]'`), checks types and
choices, and rejects unknown keys with the nearest valid name.
"""
import argparse
import difflib
import os
import sys

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "cpu_config.yaml")


class ConfigError(ValueError):
    """A config file or command-line value is invalid; the message names the key and the file."""


# key -> (type, choices or None). Types: int, float, bool, str, "list_int".
SCHEMA = {
    # --- data ---
    "data_path": (str, None),
    "dataset_path": (str, None),
    "dense_dim": (int, None),
    "slot_dim": (int, None),
    "threshold": (int, None),
    "train_line_count": (int, None),
    "skip_id_convert": (int, (0, 1)),
    "max_ind_range": (int, None),
    "val_split": (bool, None),
    "strict": (int, (0, 1)),
    "pack_size": (int, None),
    "chunk_bytes": (int, None),
    "shuffle_bucket_lines": (int, None),
    # --- model ---
    "categorical_feature_sizes": ("list_int", None),
    "data_emb_dim": (int, None),
    "bottom_mlp_args": ("list_int", None),
    "top_mlp_args": ("list_int", None),
    "interaction_op": (str, ("dot", "cat")),
    "interaction_itself": (bool, None),
    "convert_dtype": (bool, None),
    # --- training ---
    "device_target": (str, ("CPU", "GPU", "Ascend")),
    "parallel_mode": (str, ("stand_alone", "data_parallel", "hybrid_parallel")),
    "batch_size": (int, None),
    "test_batch_size": (int, None),
    "optimizer": (str, ("sgd", "adagrad")),
    "learning_rate": (float, None),
    "loss_scale": (float, None),
    "train_epochs": (int, None),
    "random_seed": (int, None),
    "do_eval": (bool, None),
    "eval_interval_steps": (int, None),
    "log_interval_steps": (int, None),
    "save_checkpoint": (bool, None),
    "save_checkpoint_steps": (int, None),
    "keep_checkpoint_max": (int, None),
    "ckpt_file_name_prefix": (str, None),
    "ckpt_path": (str, None),
    "resume": (bool, None),
    "loss_file_name": (str, None),
    "eval_file_name": (str, None),
    "shuffle_buffer_records": (int, None),
    # --- evaluation / export ---
    "checkpoint_path": (str, None),
    "file_name": (str, None),
    "file_format": (str, ("MINDIR", "ONNX", "AIR")),
    "export_batch_size": (int, None),
    "infer_data_path": (str, None),
    "result_path": (str, None),
    "label_path": (str, None),
    # --- cloud / profiling ---
    "enable_modelarts": (bool, None),
    "data_url": (str, None),
    "train_url": (str, None),
    "checkpoint_url": (str, None),
    "output_path": (str, None),
    "enable_profiling": (bool, None),
}

# Keys whose value must be > 0 / >= 0.
POSITIVE = {"dense_dim", "slot_dim", "threshold", "data_emb_dim", "batch_size", "test_batch_size",
            "train_epochs", "keep_checkpoint_max", "save_checkpoint_steps", "pack_size", "chunk_bytes",
            "shuffle_bucket_lines", "log_interval_steps", "shuffle_buffer_records"}
NON_NEGATIVE = {"train_line_count", "max_ind_range", "eval_interval_steps", "random_seed", "export_batch_size"}


class Config(dict):
    """A dict whose keys are also attributes (`cfg.batch_size`)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'{_suggest(name)}") from None

    def __setattr__(self, name, value):
        self[name] = value


def _suggest(name):
    close = difflib.get_close_matches(name, SCHEMA.keys(), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _parse_bool(text):
    low = str(text).strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (True/False), got '{text}'")


def coerce(key, value, source):
    """Convert `value` (from YAML or a command-line string) to the schema type of `key`."""
    if key not in SCHEMA:
        raise ConfigError(f"{source}: unknown key '{key}'{_suggest(key)}")
    typ, choices = SCHEMA[key]
    from_cli = isinstance(value, str) and typ is not str
    try:
        if typ == "list_int":
            if from_cli:
                value = yaml.safe_load(value)
            if value is None:
                value = []
            if not isinstance(value, (list, tuple)) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ValueError(f"expected a list of integers like [512,256,1], got {value!r}")
            value = [int(v) for v in value]
        elif typ is bool:
            value = _parse_bool(value) if isinstance(value, (str, int)) else value
            if not isinstance(value, bool):
                raise ValueError(f"expected a boolean, got {value!r}")
        elif typ is int:
            if isinstance(value, bool):
                raise ValueError(f"expected an integer, got {value!r}")
            if isinstance(value, str):
                value = int(value.strip())
            if not isinstance(value, int):
                raise ValueError(f"expected an integer, got {value!r}")
        elif typ is float:
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            value = float(value)
        elif typ is str:
            value = "" if value is None else str(value)
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: key '{key}': {exc}") from None
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: key '{key}' = {value!r} is not one of {list(choices)}")
    if key in POSITIVE and value <= 0:
        raise ConfigError(f"{source}: key '{key}' = {value!r} must be > 0")
    if key in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{source}: key '{key}' = {value!r} must be >= 0")
    return value


def load_yaml(path):
    """Load a config file; returns (values, help) after checking every key against SCHEMA."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f)]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    docs = [d for d in docs if d is not None]
    if not docs or not isinstance(docs[0], dict):
        raise ConfigError(f"{path}: the first YAML document must be a mapping of config keys")
    if len(docs) > 3:
        raise ConfigError(f"{path}: at most three YAML documents (values, help, choices), found {len(docs)}")
    values = {k: coerce(k, v, path) for k, v in docs[0].items()}
    missing = [k for k in SCHEMA if k not in values]
    if missing:
        raise ConfigError(f"{path}: missing keys {missing}")
    helps = docs[1] if len(docs) > 1 else {}
    for doc in docs[1:]:
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: help/choices documents must be mappings")
        for k in doc:
            if k not in SCHEMA:
                raise ConfigError(f"{path}: help/choices for unknown key '{k}'{_suggest(k)}")
    if len(docs) > 2:
        for k, listed in docs[2].items():
            allowed = SCHEMA[k][1]
            if allowed is None or sorted(map(str, listed)) != sorted(map(str, allowed)):
                raise ConfigError(f"{path}: choices for '{k}' {listed} disagree with the schema {allowed}")
    return values, helps


def parse_cli(argv=None, defaults_path=None):
    """Parse `--config_path` plus `--key=value` overrides. Returns a checked Config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config_path", default=defaults_path or DEFAULT_CONFIG)
    known, _ = pre.parse_known_args(argv)
    values, helps = load_yaml(known.config_path)

    parser = argparse.ArgumentParser(description="DLRM on Criteo (MindSpore)", allow_abbrev=False)
    parser.add_argument("--config_path", default=known.config_path, help="YAML config file")
    for key in SCHEMA:
        parser.add_argument(f"--{key}", type=str, default=None, help=str(helps.get(key, "")))
    args, unknown = parser.parse_known_args(argv)
    for item in unknown:
        name = item.split("=", 1)[0].lstrip("-")
        raise ConfigError(f"command line: unknown option '{item}'{_suggest(name)}")
    for key in SCHEMA:
        raw = getattr(args, key)
        if raw is not None:
            values[key] = coerce(key, raw, "command line")
    cfg = Config(values)
    cfg["config_path"] = known.config_path
    check_consistency(cfg)
    return cfg


def check_consistency(cfg):
    """Cross-key checks that a single key's type check cannot catch."""
    if cfg.interaction_op == "dot" and cfg.bottom_mlp_args and cfg.bottom_mlp_args[-1] != cfg.data_emb_dim:
        raise ConfigError(
            f"bottom_mlp_args ends with {cfg.bottom_mlp_args[-1]} but interaction_op 'dot' needs it to equal "
            f"data_emb_dim={cfg.data_emb_dim}")
    if not cfg.bottom_mlp_args or not cfg.top_mlp_args:
        raise ConfigError("bottom_mlp_args and top_mlp_args must not be empty")
    if cfg.top_mlp_args[-1] != 1:
        raise ConfigError(f"top_mlp_args must end with 1 (the click logit), got {cfg.top_mlp_args}")
    if any(v <= 0 for v in cfg.bottom_mlp_args + cfg.top_mlp_args):
        raise ConfigError("bottom_mlp_args/top_mlp_args must be positive layer widths")
    if cfg.categorical_feature_sizes and len(cfg.categorical_feature_sizes) != cfg.slot_dim:
        raise ConfigError(f"categorical_feature_sizes has {len(cfg.categorical_feature_sizes)} entries, "
                          f"slot_dim is {cfg.slot_dim}")
    if cfg.convert_dtype and cfg.device_target == "CPU":
        raise ConfigError("convert_dtype=True (fp16 MLPs) is for GPU/Ascend; on CPU fp16 is 1.4-3x slower "
                          "and bf16 MatMul has no kernel: set convert_dtype=False")
    if cfg.max_ind_range and cfg.skip_id_convert:
        raise ConfigError("max_ind_range (hashing) and skip_id_convert=1 (ids already integers) exclude each other")
    if cfg.loss_scale <= 0:
        raise ConfigError(f"loss_scale must be > 0, got {cfg.loss_scale}")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"learning_rate must be > 0, got {cfg.learning_rate}")


def get_config(argv=None):
    """Entry point for the top-level scripts: exits with a one-line message on a bad config."""
    try:
        return parse_cli(argv)
    except ConfigError as exc:
        sys.stderr.write(f"config error: {exc}\n")
        sys.exit(2)

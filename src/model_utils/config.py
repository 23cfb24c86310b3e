"""Configuration: one YAML file, overridable from the command line, checked against one schema.

`SCHEMA` below is the single definition of every key: type, help text, choices, lower bound.
A config file holds up to three YAML documents (model-zoo layout):
  1. the values,
  2. optional help text per key,
  3. optional choices per key (each must be one the schema allows; a registry's may have grown since).
The repository's cpu_config.yaml, gpu_config.yaml and npu_config.yaml are generated from the schema
and their values (`python -m src.model_utils.config --write`); a test keeps them equal to it.
`get_config()` loads `--config_path` (default: cpu_config.yaml at the repo root), applies
`--key=value` overrides (lists as YAML: `--bottom_mlp_args='[512,256,64,16]'`), checks types and
choices, and rejects unknown keys with the nearest valid name.
"""
import argparse
import difflib
import math
import os
import sys
from dataclasses import dataclass
from typing import Collection, Dict, List, Optional, Tuple, Union

import yaml

from src.model_utils.parallel_mode import ParallelMode
from src.model_utils.spec import INTERACTIONS, OPTIMIZERS, check_widths   # the registries: the choices are their names

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "cpu_config.yaml")


class ConfigError(ValueError):
    """A config file or command-line value is invalid; the message names the key and the file."""


@dataclass(frozen=True)
class Key:
    """One config key: its type (int, float, bool, str, "list_int", "list_str" or "int_or_auto"), help text, allowed values and
    lower bound. The YAML files' help and choices documents, and every command's --help, are generated from these."""
    type: object
    help: str
    choices: Optional[Collection] = None      # a tuple, or a registry (a dict: its names, read when checked)
    minimum: Optional[int] = None


# The one definition of every config key, in groups (the YAML files and --help show the same groups).
# Each key has an effect somewhere in the project.
GROUPS: Dict[str, Dict[str, Key]] = {"data": {
    "data_path": Key(str,
               "Folder holding train.txt[.gz] (Criteo Kaggle), day_0 .. day_23[.gz] (Criteo Terabyte, any "
               "contiguous run of days; the last is held out) or the files feature_spec names; preprocessing writes "
               "DIR/mindrecord/"),
    "feature_spec": Key(str,
               "Your own data: a YAML file naming the files and which columns are the label, dense and categorical "
               "features (docs/data.md), or a shipped spec's name (criteo_kaggle, criteo_terabyte). Empty = the "
               "Criteo layout of the files in data_path"),
    "dataset_path": Key(str,
               "MindRecord folder made by preprocessing (train-*.mindrecord, test-*.mindrecord parts, metadata.json)"),
    "threshold": Key(int,
               "A categorical value needs at least this many occurrences in the training lines to get its own id", minimum=1),
    "train_line_count": Key(int,
               "Lines in train.txt (the last N//7 are held out); checked against the file. 0 = count the file. Day files: 0", minimum=0),
    "dense_dim": Key(int, "A check (the model zoo's key): the number of dense features the data must have; preprocessing "
                     "and training stop with both values when it differs. 0 = not checked (the data's own)", minimum=0),
    "slot_dim": Key(int, "A check (the model zoo's key): the number of categorical slots (tables) the data must have; "
                    "preprocessing and training stop with both values when it differs. 0 = not checked", minimum=0),
    "skip_id_convert": Key(int,
               "1: categorical fields are already non-negative decimal ids, used as they are", choices=(0, 1)),
    "max_ind_range": Key(int,
               "0 = build a vocabulary; M > 0 = hash: id = 1 + key % (M-1) (key: the hex value, or a string's 64-bit "
               "hash), id 0 = missing, no counting", minimum=0),
    "val_size": Key(float, "The validation split, which every decision of training reads (keep_best, early stop, "
                    "target_auc, the tuner): the end of the training lines, just before the test lines (for day files: "
                    "the end of the last training day). A fraction of those lines (0 < f < 1) or a line count (>= 1); "
                    "0 = none. The test split stays the last N // 7 lines (or the last day)", minimum=0),
    "val_split": Key(bool, "MLPerf's split instead of val_size: the held-out lines (the last N // 7, or the last day) "
                     "in half, the first half validation, the second half test"),
    "strict": Key(int,
               "1: stop at the first bad line, naming it; 0: skip bad lines and count them by reason (predict.py: "
               "their rows get an empty probability)", choices=(0, 1)),
    "max_bad_fraction": Key(float,
               "Preprocessing fails (keeping the previous dataset) when more than this fraction of the lines "
               "are bad and skipped", minimum=0),
    "pack_size": Key(int, "Samples packed into one MindRecord row", minimum=1),
    "chunk_bytes": Key(int, "Bytes of text per preprocessing piece: the unit of parallel work and of resume "
               "(bounds each worker's memory: about 5x this)", minimum=1 << 10),
    "shuffle_bucket_lines": Key(int, "Lines per dataset part file (training: one shuffle bucket, shuffled in "
               "memory: bounds the writer's memory)", minimum=1),
    "workers": Key("int_or_auto", "Preprocessing (and predict.py) worker processes: a number, or auto (one per 64 MB "
                   "of input, at most the CPUs available and the pieces there are; the rule is printed); the dataset "
                   "and the predictions are the same for every value", minimum=1),
}, "model": {
    "categorical_feature_sizes": Key("list_int",
               "Per-slot table sizes. [] = read from the dataset's metadata.json; a list must equal it"),
    "data_emb_dim": Key(int, "Embedding dimension", minimum=1),
    "bottom_mlp_args": Key("list_int",
               "Bottom (dense) MLP widths; the last must equal data_emb_dim for the dot interaction"),
    "top_mlp_args": Key("list_int", "Top (over) MLP widths; the last must be 1 (the logit)"),
    "interaction_op": Key(str,
               "dot: pairwise dot products of the 27 vectors; cat: concatenation; dcn: the concatenation through "
               "DCN-V2 cross layers", choices=INTERACTIONS),
    "dcn_num_layers": Key(int, "dcn only: number of cross layers", minimum=1),
    "dcn_low_rank_dim": Key(int, "dcn only: rank r of each cross layer's U V^T (0 = full-rank W)", minimum=0),
    "interaction_itself": Key(bool, "dot only: also keep each vector's dot product with itself (the diagonal)"),
    "convert_dtype": Key(bool, "Compute the MLPs in float16 (GPU/Ascend only), with loss_scale"),
}, "device and parallel": {
    "cpu_kernels": Key(str, "device_target CPU, training: stock (MindSpore's ops) or fused (the dot interaction as one "
                            "C++ kernel, src/model/cpu_kernels/, built with $CXX at first use; the stock ops, with "
                            "one line, without a compiler). fused lost the A/B on MindSpore 2.10 (README, "
                            "Performance). GPU/Ascend and every export use the stock ops",
                       choices=("fused", "stock")),
    "device_target": Key(str, "CPU, GPU or Ascend (the installed MindSpore must support it)",
                         choices=("CPU", "GPU", "Ascend")),
    "parallel_mode": Key(str,
               "stand_alone; data_parallel (all tables on every rank, gradients averaged); hybrid_parallel "
               "(tables placed by sharding_plan, lookups exchanged all-to-all, MLPs data-parallel). The distribute launchers set it", choices=tuple(ParallelMode)),
    "plan_only": Key(bool, "train.py: print each rank's table, optimizer-state and runtime memory and its bytes per "
               "step for parallel_mode over rank_size ranks, then exit without training (no ranks are launched)"),
    "sharding_plan": Key("list_str",
               "hybrid_parallel: where each table lives. One entry for every table or one per table: row (rows split "
               "in blocks over all ranks), table or table:K (whole table on one rank; K pins it), replicated (on "
               "every rank, gradient all-reduced, no lookup exchange) or auto (replicated up to batch_size rows, row "
               "above a rank's share of the table bytes, table otherwise, placed to balance bytes and lookups)"),
    "rank_size": Key(int, "plan_only: the number of ranks to plan for", minimum=1),
    "memory_budget_gb": Key(float, "train.py stops before allocating when a rank would need more than this many GB "
               "(0 = this machine's available memory shared by its ranks)", minimum=0),
}, "training": {
    "batch_size": Key("int_or_auto", "Training batch size (per rank), or auto: 4096, or for a small training split the "
                      "largest power of two that leaves 64 steps an epoch (at least 16), learning_rate scaled with it "
                      "(the rule is printed)", minimum=1),
    "optimizer": Key(str,
               "sgd: plain SGD (sparse row updates for the table); adagrad: Adagrad for MLPs, row-wise sparse "
               "Adagrad for the table; adam: Adam for MLPs and interaction, row-wise sparse Adagrad for the table",
               choices=OPTIMIZERS),
    "learning_rate": Key(float, "Learning rate (the peak of the schedule); with batch_size auto, the rate at batch 4096, "
                         "scaled to the batch chosen (square root of the ratio for adagrad and adam, the ratio for "
                         "sgd)"),
    "adagrad_eps": Key(float, "Adagrad (MLPs and the row-wise table update of adagrad and adam): the step is "
                       "lr * g / (sqrt(accumulated g^2) + eps). 1e-10 is PyTorch's", minimum=0),
    "adam_eps": Key(float, "Adam: eps of lr * m / (sqrt(v) + eps). 1e-8 is PyTorch's", minimum=0),
    "warmup_steps": Key(int, "Learning-rate schedule: linear warmup over this many steps (0 = none)", minimum=0),
    "decay_start_step": Key(int, "Learning-rate schedule: the polynomial (power 2) decay starts at this step",
                            minimum=0),
    "decay_steps": Key(int, "Learning-rate schedule: the decay reaches its end after this many steps (0 = no decay; "
                       "-1 = at the last step of training, train_epochs epochs)", minimum=-1),
    "table_schedule": Key(bool, "The schedule (warmup, decay) also sets the table rows' rate; False: the tables train "
                          "at learning_rate throughout (their row-wise Adagrad anneals each row by itself) and the "
                          "schedule applies to the MLPs and the interaction"),
    "loss_scale": Key(float, "Static loss scale applied when convert_dtype is True"),
    "train_epochs": Key(int, "Epochs over the training split", minimum=1),
    "random_seed": Key(int, "Seed for parameter init and data order", minimum=0),
    "do_eval": Key(bool, "Evaluate at each epoch end: on the validation split when the dataset has one (and on the "
                   "test split once, at the end of training), else on the test split"),
    "eval_interval_steps": Key(int, "Also evaluate every N training steps (0 = only at epoch end)", minimum=0),
    "target_auc": Key(float, "Stop at the first validation evaluation whose AUC is at least this, MLPerf style, and "
                             "report the time to it (0 = off; evaluations as do_eval and eval_interval_steps say; "
                             "needs a validation split)", minimum=0),
    "keep_best": Key(bool, "Keep the checkpoint of the lowest validation logloss as PREFIX-best.safetensors; eval.py, "
                     "export.py and bundles given the checkpoint folder take it (a dataset without a validation "
                     "split has no best)"),
    "early_stop_patience": Key(int, "Stop after this many validation evaluations without a lower logloss (0 = off; "
                               "needs a validation split)", minimum=0),
    "log_interval_steps": Key(int, "Write a loss.log line every N steps", minimum=1),
    "save_checkpoint": Key(bool, "Save checkpoints during and at the end of training"),
    "save_checkpoint_steps": Key(int, "Save a checkpoint every N steps", minimum=1),
    "keep_checkpoint_max": Key(int, "Keep at most this many checkpoints in ckpt_path", minimum=1),
    "ckpt_file_name_prefix": Key(str, "Checkpoint file name prefix (a plain name: checkpoints stay in ckpt_path)"),
    "ckpt_path": Key(str, "Folder for checkpoints"),
    "resume": Key(bool,
               "Continue from the newest checkpoint in ckpt_path (parameters, optimizer state, data position)"),
    "loss_file_name": Key(str, "Training loss log file"),
    "eval_file_name": Key(str, "Evaluation log file"),
    "shuffle_buffer_records": Key(int,
               "Packed rows mixed together when reshuffling samples in epochs after the first", minimum=1),
}, "evaluation, export and inference": {
    "test_batch_size": Key(int, "Evaluation batch size (and the batch of the inference batch files)", minimum=1),
    "checkpoint_path": Key(str, "Checkpoint file (or folder: its newest) for eval.py and export.py"),
    "file_name": Key(str, "export.py: output path without extension (.mindir / .onnx / .air is added)"),
    "file_format": Key(str,
               "export.py: MINDIR, ONNX, or AIR (AIR needs the Ascend backend)", choices=("MINDIR", "ONNX", "AIR")),
    "export_table_dtype": Key(str,
               "export.py: float32; float16 (half the table bytes); int8 (row-wise: one float32 scale and offset "
               "per row, dequantised after the gather inside the exported graph)",
               choices=("float32", "float16", "int8")),
    "export_batch_size": Key(int,
               "export.py: 0 = dynamic batch (MINDIR); N = fixed batch N. ONNX needs a fixed batch: 0 means "
               "test_batch_size there", minimum=0),
    "bundle_path": Key(str, "export.py: write a model bundle to this folder (the model and the transform fitted on "
                       "dataset_path: what predict.py and serve.py score raw rows with) instead of file_name (empty = "
                       "no bundle)"),
    "model_path": Key(str, "predict.py and serve.py: the model bundle folder (export.py --bundle_path). preprocess.py "
                      "and postprocess.py: an exported model (.mindir or .onnx, its record .json beside it), refused "
                      "before anything is written when it does not fit dataset_path (empty = no check)"),
    "input_path": Key(str, "predict.py: the raw data to score: a file or a glob (day_*), plain or .gz, in the layout "
                      "of the bundle's feature spec (Criteo TSV, your CSV/TSV with or without a header); the label "
                      "column may be left out"),
    "key_column": Key(str, "predict.py: a column of the input copied into the output before `probability` (an id "
                      "column; empty = none)"),
    "infer_data_path": Key(str, "preprocess.py: folder for the inference batch files (00_ids/, 01_dense/, label/)"),
    "result_path": Key(str, "Inference results folder (<batch>_0.bin per batch) that postprocess.py reads"),
    "label_path": Key(str, "postprocess.py: folder of label batch files written by preprocess.py"),
    "runtime": Key(str, "predict.py and serve.py: the model runtime: onnxruntime (the bundle's ONNX graph: about "
                   "twice MindSpore's rate, probabilities within about 1e-6 of eval.py's), mindspore (its MINDIR: "
                   "probabilities equal to eval.py's), or auto (onnxruntime when the bundle has it)",
                   choices=("auto", "onnxruntime", "mindspore")),
}, "serving": {
    "host": Key(str, "serve.py: the address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)"),
    "port": Key(int, "serve.py: the TCP port (0: a free one, printed at start)", minimum=0),
    "max_batch_rows": Key(int, "serve.py: rows of concurrent requests scored in one model call at most", minimum=1),
    "max_wait_ms": Key(float, "serve.py: how long the first request of a micro-batch waits for others (ms)",
                       minimum=0),
    "max_queue_rows": Key(int, "serve.py: rows waiting to be scored at most; a request beyond them is answered 503 "
                          "at once", minimum=1),
    "max_body_bytes": Key(int, "serve.py: the largest request body; a larger one is answered 400", minimum=1),
}, "cloud and profiling": {
    "enable_modelarts": Key(bool,
               "Run on ModelArts: copy data_url/checkpoint_url in and output_path out with moxing"),
    "data_url": Key(str, "ModelArts: OBS URL of the dataset"),
    "train_url": Key(str, "ModelArts: OBS URL for outputs"),
    "checkpoint_url": Key(str, "ModelArts: OBS URL of a checkpoint"),
    "output_path": Key(str, "Local output folder (ModelArts sync target; profiler output); predict.py: the CSV file "
                       "of probabilities (a folder: its predictions.csv)"),
    "enable_profiling": Key(bool, "Profile training with mindspore.Profiler into output_path/profiler"),
}}
SCHEMA: Dict[str, Key] = {k: key for keys in GROUPS.values() for k, key in keys.items()}
TARGETS = {"CPU": "cpu_config.yaml", "GPU": "gpu_config.yaml", "Ascend": "npu_config.yaml"}


class Config(dict):
    """A dict whose keys are also attributes (`cfg.batch_size`). `cli_keys` holds the keys given on the
    command line (empty for a copy)."""
    cli_keys: frozenset = frozenset()

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


def _int_or_auto(value: object) -> Union[int, str]:
    """"auto", or the value as an integer (ValueError otherwise)."""
    if value == "auto":
        return value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError(f"expected auto or an integer, got {value!r}")


def coerce(key: str, value: object, source: str) -> object:
    """`value` (YAML or a command-line string) converted to `key`'s schema type and checked; ConfigError
    names `source` (the file or 'command line') and the key."""
    if key not in SCHEMA:
        raise ConfigError(f"{source}: unknown key '{key}'{_suggest(key)}")
    typ, choices = SCHEMA[key].type, SCHEMA[key].choices
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
        elif typ == "list_str":
            if from_cli:
                value = yaml.safe_load(value)
            if value is None:
                value = []
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of names like [row,table:1,replicated], got {value!r}")
            value = [str(v) for v in value]
        elif typ == "int_or_auto":
            value = _int_or_auto(value)
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
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value!r}")
        elif typ is str:
            value = "" if value is None else str(value)
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: key '{key}': {exc}") from None
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: key '{key}' = {value!r} is not one of {list(choices)}")
    minimum = SCHEMA[key].minimum
    if minimum is not None and value != "auto" and value < minimum:
        raise ConfigError(f"{source}: key '{key}' = {value!r} must be {'> 0' if minimum == 1 else f'>= {minimum:,}'}")
    return value


def load_yaml(path: str) -> Tuple[dict, dict]:
    """Load a config file; returns (values, help) after checking every key against SCHEMA."""
    if os.path.isdir(path):
        raise ConfigError(f"config_path '{path}' is a folder; expected a YAML file such as cpu_config.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f)]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
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
            allowed = SCHEMA[k].choices                    # a registry may have grown since the file was written
            if allowed is None or not set(map(str, listed)) <= set(map(str, allowed)):
                raise ConfigError(f"{path}: choices for '{k}' {listed} disagree with the schema "
                                  f"{None if allowed is None else list(allowed)}")
    return values, helps


TYPE_NAMES = {int: "INT", float: "FLOAT", bool: "BOOL", str: "TEXT", "list_int": "[INT,...]", "list_str": "[NAME,...]",
              "int_or_auto": "auto|INT"}


def _argparse_text(text: str) -> str:
    """argparse formats help texts with %-formatting: every help text goes through here once ('%' -> '%%')."""
    return text.replace("%", "%%")


def build_parser(values: dict, config_path: str, description: str = "", prog: Optional[str] = None
                 ) -> argparse.ArgumentParser:
    """The command-line parser of every entry point: --config_path and one --KEY=VALUE option per SCHEMA key,
    grouped as the YAML files group them; each option's help gives its type, choices and the value it has in
    `config_path` (`values`)."""
    parser = argparse.ArgumentParser(prog=prog, usage="%(prog)s [--config_path=YAML] [--KEY=VALUE ...]",
                                     description=_argparse_text(description), allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=_argparse_text(f"Every key can also be set in the YAML file; lists are "
                                                           f"written --key='[1,2]'. Defaults shown are {config_path}'s."))
    parser.add_argument("--config_path", default=config_path, metavar="YAML",
                        help=_argparse_text("YAML config file (cpu_config.yaml, gpu_config.yaml, npu_config.yaml)"))
    for group, keys in GROUPS.items():
        g = parser.add_argument_group(group)
        for key, spec in keys.items():
            kind = "|".join(str(c) for c in spec.choices) if spec.choices else TYPE_NAMES[spec.type]
            shown = _yaml_value(values[key]) if key in values else "(none)"
            g.add_argument(f"--{key}", type=str, default=None, metavar=kind,
                           help=_argparse_text(f"{spec.help} [{TYPE_NAMES[spec.type].lower()}, default {shown}]"))
    return parser


def parse_cli(argv: Optional[List[str]] = None, defaults_path: Optional[str] = None, description: str = "",
              prog: Optional[str] = None) -> "Config":
    """Parse `--config_path` plus `--key=value` overrides. Returns a checked Config. `--help` prints every key
    with its type, choices, default and help, grouped as in the YAML files, and exits 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config_path", default=defaults_path or DEFAULT_CONFIG)
    known, _ = pre.parse_known_args(argv)
    wants_help = any(a in ("-h", "--help") for a in argv)
    try:
        values, _ = load_yaml(known.config_path)
    except ConfigError:
        if not wants_help:
            raise
        values = {}                      # --help still works with a broken --config_path
    parser = build_parser(values, known.config_path, description, prog)
    args, unknown = parser.parse_known_args(argv)
    for item in unknown:
        name = item.split("=", 1)[0].lstrip("-")
        raise ConfigError(f"command line: unknown option '{item}'{_suggest(name)}")
    given = []
    for key in SCHEMA:
        raw = getattr(args, key)
        if raw is not None:
            values[key] = coerce(key, raw, "command line")
            given.append(key)
    cfg = Config(values)
    object.__setattr__(cfg, "cli_keys", frozenset(given))
    cfg["config_path"] = known.config_path
    check_consistency(cfg)
    return cfg


def check_feature_counts(cfg: "Config", dense: int, slots: int, source: str) -> None:
    """The model zoo's dense_dim / slot_dim, when set (not 0), against the data's counts (`source` names the data).
    Raises ConfigError naming both values."""
    for key, want, have in (("dense_dim", cfg.dense_dim, dense), ("slot_dim", cfg.slot_dim, slots)):
        if want and want != have:
            raise ConfigError(f"{key}={want} but {source} has {have}: set --{key}={have} (or 0, not checked), or "
                              f"point to the data it was meant for")


def check_consistency(cfg: "Config") -> None:
    """Cross-key checks that a single key's type check cannot catch."""
    try:                                        # the spec's width checks, for the Criteo layout (dense features)
        check_widths(cfg.data_emb_dim, cfg.bottom_mlp_args, cfg.top_mlp_args, INTERACTIONS[cfg.interaction_op](),
                     dense=True)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.convert_dtype and cfg.device_target == "CPU":
        raise ConfigError("convert_dtype=True (fp16 MLPs) is for GPU/Ascend; on CPU fp16 is 1.4-3x slower "
                          "and bf16 MatMul has no kernel: set convert_dtype=False")
    if cfg.max_ind_range and cfg.skip_id_convert:
        raise ConfigError("max_ind_range (hashing) and skip_id_convert=1 (ids already integers) exclude each other")
    prefix = cfg.ckpt_file_name_prefix
    if not prefix or "/" in prefix or os.sep in prefix or prefix.startswith(".") or "\0" in prefix:
        raise ConfigError(f"ckpt_file_name_prefix={prefix!r} must be a plain file name (no path separators, not "
                          f"starting with '.'), so that checkpoints stay inside ckpt_path")
    if cfg.loss_scale <= 0:
        raise ConfigError(f"loss_scale must be > 0, got {cfg.loss_scale}")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"learning_rate must be > 0, got {cfg.learning_rate}")
    if cfg.target_auc >= 1:
        raise ConfigError(f"target_auc must be below 1 (0 = off), got {cfg.target_auc}")
    if cfg.target_auc and not (cfg.do_eval or cfg.eval_interval_steps):
        raise ConfigError(f"target_auc={cfg.target_auc} needs evaluations: set do_eval=True or eval_interval_steps")
    if cfg.decay_steps and cfg.decay_start_step < cfg.warmup_steps:
        raise ConfigError(f"decay_start_step={cfg.decay_start_step} is inside the warmup (warmup_steps="
                          f"{cfg.warmup_steps}); start the decay at or after the end of the warmup")


def get_config(argv: Optional[List[str]] = None, description: str = "") -> "Config":
    """Entry point for the top-level scripts: exits with a one-line message on a bad config; `--help` prints the
    keys (`description`: the script's docstring) and exits 0."""
    try:
        return parse_cli(argv, description=description)
    except ConfigError as exc:
        sys.stderr.write(f"config error: {exc}\n")
        sys.exit(2)


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return repr(value)


def render_yaml(values: dict, target: str) -> str:
    """The text of a model-zoo config file: the values, then the help and the choices of every key,
    all from SCHEMA (the help and choices documents are never written by hand)."""
    lines = [f"# DLRM config for {target}. Generated from src/model_utils/config.py's SCHEMA with these values",
             "# (python -m src.model_utils.config --write); keys are documented in the second YAML document.",
             "# Every key can be overridden on the command line: --key=value (lists as --key='[1,2]')."]
    for group, keys in GROUPS.items():
        lines.append(f"# ---- {group} ----")
        lines += [f"{k}: {_yaml_value(values[k])}" for k in keys]
    lines.append("---")
    lines += [f"{k}: {_yaml_value(key.help)}" for k, key in SCHEMA.items()]
    lines.append("---")
    lines += [f"{k}: [{', '.join(str(c) for c in key.choices)}]" for k, key in SCHEMA.items() if key.choices]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.model_utils.config --write`: regenerate the three config files from SCHEMA,
    keeping their values (a new key takes the value given with --default KEY=VALUE)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--write", action="store_true", help="rewrite cpu/gpu/npu_config.yaml")
    ap.add_argument("--default", action="append", default=[], metavar="KEY=VALUE",
                    help="value for a key that a file does not have yet")
    args = ap.parse_args(argv)
    defaults = dict(item.split("=", 1) for item in args.default)
    for target, name in TARGETS.items():
        path = os.path.join(REPO_ROOT, name)
        with open(path, encoding="utf-8") as f:
            raw = next(yaml.safe_load_all(f))
        values = {k: coerce(k, raw[k] if k in raw else defaults.get(k), path) for k in SCHEMA}
        text = render_yaml(values, target)
        if args.write:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
            print(f"wrote {path}")
        else:
            print(text)


if __name__ == "__main__":
    main()

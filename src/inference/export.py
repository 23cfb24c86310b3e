"""The trained network for inference, and its export to MINDIR / ONNX / AIR.

Exported signature (every format):
    inputs  ids   int32   [B, L]          per-slot ids as written by preprocessing (0 missing, 1 OOV); L = spec.lookups
            dense float32 [B, Dn]         log(1 + max(x, 0)) transformed numbers; Dn = spec.dense_dim (a model
                                          without dense features has the ids input alone)
    output  prob  float32 [B, 1]          click probability (sigmoid of the logit)
B is dynamic (-1) in MINDIR when export_batch_size is 0; ONNX export from MindSpore 2.10 needs a fixed B.

A MINDIR whose parameters pass MindSpore's 1 GB protobuf budget is written by MindSpore as
`<name>_graph.mindir` plus a `<name>_variables/` folder (the Kaggle tables: 25 KB + 2.1 GB); mindspore.load
of `<name>_graph.mindir` finds the folder beside it. Outputs appear atomically: everything is written
to a temporary folder next to the target and renamed into place. Beside the model file goes its record
(`<model file>.json`, src/inference/model_record.py): the model's spec, the checkpoint and the dataset's fingerprints,
which the inference path checks against its dataset.
"""
import os
import shutil
from typing import Callable, List, Optional, Tuple

import mindspore as ms
from mindspore import Tensor

from src.model.cpu_kernels.ops import stock_ops
from src.model.dlrm import build_model
from src.model.serving import CompactDLRMProbability, DLRMProbability, IdsOnly
from src.model_utils.spec import DLRMSpec, spec_from_legacy
from src.training import checkpoint
from src.training.preflight import config_spec
from src.inference.model_record import SUFFIX, make_record, record_path
from src.utils.staged_dir import LOCK, locked_tmpdir, write_json_atomic

LEGACY_KEYS = ("data_emb_dim", "bottom_mlp_args", "top_mlp_args", "interaction_op", "interaction_itself",
               "dcn_num_layers", "dcn_low_rank_dim")   # checkpoints before specs stored these config keys
ONNX_LIMIT = 2 ** 31 - (64 << 20)   # protobuf's 2 GB message limit, less room for the graph
EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


class ExportError(ValueError):
    """The export cannot be done as configured; the message says which key to change."""


def checkpoint_spec(cfg, path: str, model: dict) -> DLRMSpec:
    """The model a checkpoint holds: its stored spec (meta.model["spec"]), the spec of an older checkpoint's
    architecture keys, or, for a checkpoint without a description, the config's (config_spec). Raises
    CheckpointError when the command line asks for another model than the checkpoint's."""
    if not model:
        return config_spec(cfg)
    if "spec" in model:
        spec = DLRMSpec.from_json(model["spec"])
    else:
        spec = spec_from_legacy({k: cfg[k] for k in LEGACY_KEYS} | model)      # keys added later keep their defaults
    if cfg.categorical_feature_sizes and tuple(cfg.categorical_feature_sizes) != spec.table_sizes:
        raise checkpoint.CheckpointError(f"categorical_feature_sizes in the config disagrees with the table sizes "
                                         f"recorded in '{path}'; set categorical_feature_sizes='[]'")
    have = spec.config_values()
    clash = [k for k in have if k in cfg.cli_keys and cfg[k] != have[k]]
    if clash:
        raise checkpoint.CheckpointError(
            f"checkpoint '{path}' holds a network with " + ", ".join(f"{k}={have[k]}" for k in clash) +
            " but the command line asks for " + ", ".join(f"{k}={cfg[k]}" for k in clash) +
            ": the network is rebuilt from the checkpoint; drop those options or pick another checkpoint")
    return spec


def load_inference_net(cfg, checkpoint_path: str) -> Tuple[DLRMProbability, str, dict, dict]:
    """(probability net in eval mode, checkpoint file, position, model description) for a checkpoint file
    or folder. The network is rebuilt from the checkpoint's own spec (checkpoint_spec), so no dataset is
    needed; the config's model keys do not apply to it."""
    path = checkpoint.resolve(checkpoint_path, cfg.ckpt_file_name_prefix)
    arrays, position, _, model = checkpoint.read(path)
    position.pop("shard", None)
    spec = checkpoint_spec(cfg, path, model)
    net = build_model(spec, cfg.random_seed, cfg.convert_dtype)
    checkpoint.restore(net.trainable_params(), arrays, path)
    del arrays
    prob = DLRMProbability(net)
    prob.set_train(False)
    return prob, path, position, model


def export_batch(cfg) -> Optional[int]:
    """The batch dimension to export: None (dynamic) or an int."""
    if cfg.export_batch_size:
        return cfg.export_batch_size
    return cfg.test_batch_size if cfg.file_format == "ONNX" else None


def check_format(cfg, param_bytes: Optional[int] = None) -> None:
    """AIR only on Ascend; ONNX only under protobuf's 2 GB. Raises ExportError naming the key to change."""
    if cfg.file_format == "AIR" and cfg.device_target != "Ascend":
        raise ExportError(f"file_format=AIR needs the Ascend backend (device_target=Ascend on a machine with "
                          f"Ascend devices and CANN); device_target is {cfg.device_target}. MindSpore writes AIR "
                          f"only there: use --file_format=MINDIR or --file_format=ONNX")
    if cfg.file_format == "ONNX" and param_bytes is not None and param_bytes > ONNX_LIMIT:
        raise ExportError(f"the model has {param_bytes / 2 ** 30:.2f} GB of parameters; an ONNX file is one protobuf "
                          f"message, limited to 2 GB. Export MINDIR instead (--file_format=MINDIR), which stores "
                          f"large parameters in a <name>_variables/ folder; or, for the ONNX / C++ path, export the "
                          f"table in --export_table_dtype=float16 (half the bytes) or int8 (0.375x), or make the "
                          f"tables smaller: preprocess with --max_ind_range=M (hashing into M rows per table) or a "
                          f"higher --threshold, and train again")


def model_file(file_name: str, file_format: str, folder_listing: List[str]) -> str:
    """The file a runtime loads among the exported entries."""
    base = os.path.basename(file_name)
    for cand in (base + EXTENSIONS[file_format], base + "_graph" + EXTENSIONS[file_format]):
        if cand in folder_listing:
            return cand
    raise ExportError(f"MindSpore wrote {sorted(folder_listing)}, none of them the expected "
                      f"{base}{EXTENSIONS[file_format]}")


def _remove_export(path: str) -> None:
    """Remove an earlier export entry: a model file, or a `<name>_variables/` folder of MindSpore's
    `data_N` files. A folder of that name holding anything else is not ours: ExportError."""
    if os.path.isdir(path) and not os.path.islink(path):
        if not all(e.is_file() and e.name.startswith("data_") for e in os.scandir(path)):
            raise ExportError(f"'{path}' holds files that are not an earlier export's (data_N); move them away "
                              f"or choose another file_name")
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def export_network(prob_net, cfg, log: Callable[[str], None] = print, source: Optional[dict] = None) -> str:
    """Export `prob_net` (a DLRMProbability) to cfg.file_name + extension, its table in
    cfg.export_table_dtype, with its record beside it (model_record.py: `source` = {checkpoint, step, model}, the
    checkpoint it came from); returns the path of the model file."""
    if cfg.export_table_dtype != "float32":
        prob_net = CompactDLRMProbability(prob_net.net, cfg.export_table_dtype)
        prob_net.set_train(False)
    param_bytes = sum(p.nbytes for p in prob_net.get_parameters())
    check_format(cfg, param_bytes)
    batch = export_batch(cfg)
    spec = prob_net.spec
    inputs = [Tensor(shape=[batch, spec.lookups], dtype=ms.int32)]
    if spec.dense_dim:
        inputs.append(Tensor(shape=[batch, spec.dense_dim], dtype=ms.float32))
    else:
        prob_net = IdsOnly(prob_net)
    target = os.path.abspath(cfg.file_name)
    folder, base = os.path.dirname(target), os.path.basename(target)
    if not base:
        raise ExportError(f"file_name '{cfg.file_name}' names a folder; give a file name without extension")
    ext = EXTENSIONS[cfg.file_format]
    with locked_tmpdir(folder, base) as tmp:
        with stock_ops(prob_net):
            ms.export(prob_net, *inputs, file_name=os.path.join(tmp, base), file_format=cfg.file_format)
        written = [e for e in os.listdir(tmp) if e != LOCK]
        main = model_file(base, cfg.file_format, written)
        src = source or {"checkpoint": "", "step": -1, "model": {}}
        write_json_atomic(record_path(os.path.join(tmp, main)),
                          make_record(main, cfg.file_format, batch, cfg.export_table_dtype, **src))
        written.append(os.path.basename(record_path(main)))
        # a previous export of the other layout (single file vs graph + variables) must not linger, nor its record
        models = {base + ext, base + "_graph" + ext}
        for entry in models | {record_path(m) for m in models} | {base + "_variables"} | set(written):
            _remove_export(os.path.join(folder, entry))
        # the variables first, the record last: a model file never stands without its variables, and a record
        # never beside another model than its own
        for entry in sorted(written, key=lambda e: (e != base + "_variables", e.endswith(SUFFIX))):
            os.replace(os.path.join(tmp, entry), os.path.join(folder, entry))
    path = os.path.join(folder, main)
    log(f"exported {cfg.file_format} to {path} (batch {'dynamic' if batch is None else batch}; "
        f"inputs ids int32 [B,{spec.lookups}]" + (f", dense float32 [B,{spec.dense_dim}]" if spec.dense_dim else "") +
        "; output float32 [B,1]; "
        f"{param_bytes / 2 ** 20:.1f} MB of parameters, table in {cfg.export_table_dtype}"
        + (f", stored in {os.path.join(folder, base + '_variables')}" if main.endswith("_graph" + ext) else "")
        + ")")
    return path

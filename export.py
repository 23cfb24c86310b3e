"""Export a trained DLRM checkpoint for inference: MINDIR (dynamic batch by default), ONNX, or AIR (Ascend).

    python export.py --checkpoint_path=CKPT_FILE_OR_DIR --file_name=dlrm --file_format=MINDIR [--key=value ...]
    python export.py --checkpoint_path=CKPT_FILE_OR_DIR --dataset_path=DIR/mindrecord --bundle_path=BUNDLE

The network (table sizes and architecture) is rebuilt from the checkpoint's own description: no dataset is needed.
A folder means the newest checkpoint of its most recent training run. Given --dataset_path, the checkpoint must fit
that dataset (one line and exit code 2 otherwise, before MindSpore starts). Beside the model goes its record,
`<model file>.json`, which the inference path checks against its dataset.
With --bundle_path, the model and the transform fitted in training (from --dataset_path) go into one self-contained
folder that predict.py and serve.py score raw rows with (src/inference/bundle.py).
Signature: ids int32 [B, L], dense float32 [B, Dn] -> click probability float32 [B, 1] (Criteo: L = 26, Dn = 13).
"""
import os

from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper

config = get_config(description=__doc__)


def export(path: str) -> None:
    """Load the checkpoint's network on the device and write the export (and its record), or the model bundle."""
    from src.inference.export import check_format, export_network, load_inference_net
    from src.utils.runtime import setup_context
    if not config.bundle_path:
        check_format(config)         # AIR off Ascend fails before anything is built
    setup_context(config.device_target, get_device_id())
    net, path, position, model = load_inference_net(config, path)
    step = position.get("global_step", -1)
    print(f"checkpoint: {path} (step {step})", flush=True)
    source = {"checkpoint": path, "step": step, "model": model}
    if config.bundle_path:
        from src.data.packed_format import load_metadata
        from src.inference.bundle import write_bundle
        write_bundle(net, config.bundle_path, source, config.dataset_path, load_metadata(config.dataset_path))
        print(f"wrote the model bundle {config.bundle_path}: score raw files with `python predict.py "
              f"--model_path={config.bundle_path} --input_path=FILE --output_path=OUT.csv`, serve them with "
              f"`python serve.py --model_path={config.bundle_path}`")
    else:
        export_network(net, config, source=source)


@moxing_wrapper(config)
def main():
    from src.data.packed_format import DatasetError
    from src.training.checkpoint import CheckpointError, checked_checkpoint
    from src.utils.cli import run_or_exit
    # a bundle takes the dataset's fitted transform: its dataset is always checked (the config's when not given)
    dataset = config.dataset_path if config.bundle_path or "dataset_path" in config.cli_keys else None
    info = run_or_exit("export", lambda: checked_checkpoint(config.checkpoint_path, config.ckpt_file_name_prefix,
                                                            dataset), (DatasetError, CheckpointError))
    from src.data.transform import TransformError
    if config.bundle_path:                                # a dataset made otherwise than from raw lines has no transform
        from src.data.packed_format import load_metadata
        from src.data.transform import FittedTransform
        run_or_exit("export", lambda: FittedTransform.from_dataset(config.dataset_path,
                                                                   load_metadata(config.dataset_path)),
                    (DatasetError, TransformError))
    from src.inference.export import ExportError          # MindSpore starts here, after the checks
    from src.utils.runtime import DeviceUnavailable
    from src.utils.staged_dir import OutputError
    run_or_exit("export", lambda: export(info.path),
                (ExportError, DatasetError, CheckpointError, DeviceUnavailable, OutputError, TransformError))


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    main()

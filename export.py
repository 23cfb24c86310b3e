"""Export a trained DLRM checkpoint for inference: MINDIR (dynamic batch by default), ONNX, or AIR (Ascend).

    python export.py --checkpoint_path=CKPT_FILE_OR_DIR --file_name=dlrm --file_format=MINDIR [--key=value ...]

The network (table sizes and architecture) is rebuilt from the checkpoint's own description: no dataset
is needed.
Signature: ids int32 [B, 26], dense float32 [B, 13] -> click probability float32 [B, 1].
"""
import os
import sys

from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper

config = get_config(description=__doc__)


@moxing_wrapper(config)
def main():
    from src.training.checkpoint import CheckpointError
    from src.data.packed_format import DatasetError
    from src.inference.export import ExportError, check_format, export_network, load_inference_net
    from src.utils.runtime import DeviceUnavailable, setup_context
    try:
        check_format(config)             # AIR off Ascend fails before anything is built
        setup_context(config.device_target, get_device_id())
        net, path, position, _ = load_inference_net(config, config.checkpoint_path)
        print(f"checkpoint: {path} (step {position.get('global_step', -1)})", flush=True)
        export_network(net, config)
    except (ExportError, DatasetError, CheckpointError, DeviceUnavailable) as exc:
        sys.stderr.write(f"export error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    main()

"""Evaluate a DLRM checkpoint on the test split: accuracy, AUC and logloss over every test sample.

    python eval.py --dataset_path=DIR/mindrecord --checkpoint_path=CKPT_FILE_OR_DIR [--key=value ...]

A folder means the newest checkpoint of its most recent training run. A checkpoint that does not fit the dataset
(other features, table sizes or vocabulary) is refused in one line, exit code 2, before MindSpore starts.
"""
import time

from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper

config = get_config(description=__doc__)


def evaluate_checkpoint(path: str) -> str:
    """Load the checkpoint's network and score the test split; returns the eval.log line."""
    from src.inference.export import load_inference_net
    from src.training.evaluation import evaluate
    from src.training.logs import eval_line
    from src.utils.runtime import setup_context
    setup_context(config.device_target, get_device_id())
    net, path, position, _ = load_inference_net(config, path)
    result = evaluate(net, config.dataset_path, "test", config.test_batch_size, progress=True)
    return eval_line(f"checkpoint: {path}, step: {position.get('global_step', -1)}", result)


@moxing_wrapper(config)
def main():
    from src.data.packed_format import DatasetError
    from src.training.checkpoint import CheckpointError, checked_checkpoint
    from src.utils.cli import run_or_exit
    from src.utils.runtime import DeviceUnavailable, append_line
    errors = (DatasetError, CheckpointError, DeviceUnavailable, ValueError)
    info = run_or_exit("eval", lambda: checked_checkpoint(config.checkpoint_path, config.ckpt_file_name_prefix,
                                                          config.dataset_path), errors)
    start = time.time()
    line = run_or_exit("eval", lambda: evaluate_checkpoint(info.path), errors)
    append_line(config.eval_file_name, line)
    print(line)
    print(f"eval done in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()

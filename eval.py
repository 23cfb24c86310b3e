"""Evaluate a DLRM checkpoint on the test split: accuracy, AUC and logloss over every test sample.

    python eval.py --dataset_path=DIR/mindrecord --checkpoint_path=CKPT_FILE_OR_DIR [--key=value ...]
"""
import sys
import time

from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper

config = get_config(description=__doc__)


@moxing_wrapper(config)
def main():
    from src.training.checkpoint import CheckpointError, check_same_vocab
    from src.data.packed_format import DatasetError, load_metadata
    from src.inference.export import load_inference_net
    from src.training.evaluation import evaluate
    from src.training.logs import eval_line
    from src.utils.runtime import DeviceUnavailable, append_line, setup_context
    try:
        setup_context(config.device_target, get_device_id())
        net, path, position, model = load_inference_net(config, config.checkpoint_path)
        check_same_vocab(model, path, load_metadata(config.dataset_path), config.dataset_path)
        start = time.time()
        result = evaluate(net, config.dataset_path, "test", config.test_batch_size, progress=True)
    except (DatasetError, CheckpointError, DeviceUnavailable, ValueError) as exc:
        sys.stderr.write(f"eval error: {exc}\n")
        sys.exit(1)
    line = eval_line(f"checkpoint: {path}, step: {position.get('global_step', -1)}", result)
    append_line(config.eval_file_name, line)
    print(line)
    print(f"eval done in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()

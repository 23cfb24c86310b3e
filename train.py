"""Train DLRM on a preprocessed Criteo dataset.

    python train.py --config_path=cpu_config.yaml --dataset_path=DIR/mindrecord [--key=value ...]
"""
import os
import sys
import time

from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper

config = get_config()


@moxing_wrapper(config)
def main():
    from src.checkpoint import CheckpointError
    from src.dataset import DatasetError
    from src.trainer import Trainer, TrainingDiverged, format_eval, setup_context
    setup_context(config, get_device_id(config))
    try:
        trainer = Trainer(config)
        print(trainer.describe(), flush=True)
        start = time.time()
        pos = trainer.run()
    except (DatasetError, CheckpointError, TrainingDiverged, ValueError) as exc:
        sys.stderr.write(f"train error: {exc}\n")
        sys.exit(1)
    print(f"trained {pos['global_step']} steps in {time.time() - start:.1f}s; "
          f"checkpoint: {trainer.last_checkpoint or 'not saved (save_checkpoint=False)'}")
    if trainer.eval_results:
        print(f"final eval: {format_eval(trainer.eval_results[-1])}")


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    main()

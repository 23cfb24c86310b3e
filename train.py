"""Train DLRM on a preprocessed Criteo dataset.

    python train.py --config_path=cpu_config.yaml --dataset_path=DIR/mindrecord [--key=value ...]
Distributed (parallel_mode data_parallel / hybrid_parallel): one process per rank, started by
scripts/run_distribute_train_{cpu,gpu,ascend}.sh.
"""
import os
import sys
import time

from src.model_utils.config import get_config
from src.model_utils.device_adapter import get_device_id
from src.model_utils.moxing_adapter import moxing_wrapper

config = get_config()


def plan_only() -> None:
    """--plan_only=True: print the plan for rank_size ranks and whether it fits memory_budget_gb; no training."""
    from src.data.packed_format import DatasetError
    from src.training.memory_plan import MemoryBudgetError, budget_bytes, check_budget, plan, plan_table_sizes
    try:
        sizes = plan_table_sizes(config)
        print("\n".join(plan(config, sizes, config.rank_size).lines()))
        check_budget(config, sizes, config.rank_size, budget_bytes(config))
    except MemoryBudgetError as exc:
        print(f"does not fit: {exc}")
        sys.exit(1)
    except (DatasetError, ValueError) as exc:
        sys.stderr.write(f"train error: {exc}\n")
        sys.exit(1)
    print(f"fits: memory_budget_gb allows {budget_bytes(config) / 2 ** 30:.2f} GB per rank")


@moxing_wrapper(config)
def main():
    from src.training.checkpoint import CheckpointError
    from src.data.packed_format import DatasetError
    from src.training.parallel import distributed_device_id, init_parallel
    from src.training.logs import format_eval
    from src.training.trainer import Trainer, TrainingDiverged
    from src.utils.runtime import setup_context
    distributed = config.parallel_mode != "stand_alone"
    setup_context(config.device_target, distributed_device_id() if distributed else get_device_id(config))
    try:
        par = init_parallel(config)
    except RuntimeError as exc:
        sys.stderr.write(f"train error: {exc}\n")
        sys.exit(1)
    if par.distributed:
        print(f"rank {par.rank} of {par.size} ({par.mode}), pid {os.getpid()}", flush=True)
    try:
        from src.data.packed_format import load_metadata, table_sizes_for
        from src.training.memory_plan import budget_bytes, check_budget
        sizes = table_sizes_for(config, load_metadata(config.dataset_path))
        rank_plan = check_budget(config, sizes, par.size, budget_bytes(config))     # before allocating
        trainer = Trainer(config, parallel=par)
        if par.is_main:
            print(trainer.describe(), flush=True)
            print("\n".join(rank_plan.lines()), flush=True)
        start = time.time()
        pos = trainer.run()
    except (DatasetError, CheckpointError, TrainingDiverged, ValueError) as exc:
        sys.stderr.write(f"train error{f' (rank {par.rank})' if par.distributed else ''}: {exc}\n")
        sys.exit(1)
    if par.is_main:
        print(f"trained {pos['global_step']} steps in {time.time() - start:.1f}s; "
              f"checkpoint: {trainer.last_checkpoint or 'not saved (save_checkpoint=False)'}")
        if trainer.eval_results:
            print(f"final eval: {format_eval(trainer.eval_results[-1])}", flush=True)
    trainer.close()


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    if config.plan_only:
        plan_only()
    else:
        main()

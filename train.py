"""Train DLRM on a preprocessed dataset (DIR/mindrecord from src/preprocess_data.py).

    python train.py --config_path=cpu_config.yaml --dataset_path=DIR/mindrecord [--key=value ...]
    python train.py --plan_only=True --rank_size=64 --parallel_mode=hybrid_parallel ...   # memory estimate, no training
Distributed (parallel_mode data_parallel / hybrid_parallel): one process per rank, started by
scripts/run_distribute_train_{cpu,gpu,ascend}.sh. The dataset is checked before MindSpore is loaded.
"""
import os
import sys
import time
from typing import Optional

from src.model_utils.config import get_config

config = get_config(description=__doc__)


def fail(message: str, rank=None, code: int = 1) -> None:
    """Print `train error: ...` (naming the rank when distributed), report it to the launcher, exit `code` (2: the
    checkpoint to resume does not fit the dataset or the config)."""
    from src.utils.rank_report import report
    sys.stderr.write(f"train error{f' (rank {rank})' if rank is not None else ''}: {message}\n")
    report("error", rank, message=message)
    sys.exit(code)


def plan_only() -> None:
    """--plan_only=True: print the plan for rank_size ranks and whether it fits memory_budget_gb; no training."""
    from src.data.packed_format import DatasetError
    from src.training.memory_estimate import MemoryBudgetError, budget_bytes, check_budget, estimate
    from src.training.preflight import config_spec
    try:
        spec = config_spec(config)
        print("\n".join(estimate(config, spec, config.rank_size).lines()))
        check_budget(config, spec, config.rank_size, budget_bytes(config))
    except MemoryBudgetError as exc:
        print(f"does not fit: {exc}")
        sys.exit(1)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    print(f"fits: memory_budget_gb allows {budget_bytes(config) / 2 ** 30:.2f} GB per rank")


def scheduler() -> None:
    """The process msrun (or a multi-node launch) starts with MS_ROLE=MS_SCHED: it only hosts MindSpore's cluster
    until the ranks leave, so it loads nothing of the model."""
    import mindspore as ms
    from src.training.parallel import init_parallel
    ms.set_context(mode=ms.GRAPH_MODE)
    init_parallel(config.parallel_mode)


def main() -> None:
    """Check the dataset, start the device and communication, train, evaluate, report to the launcher."""
    from src.data.packed_format import DatasetError
    from src.model_utils.config import Config
    from src.training.checkpoint import CheckpointError, checked_resume
    from src.training.preflight import check_dataset
    from src.utils.rank_report import env_rank
    distributed = config.parallel_mode != "stand_alone"
    checked = None
    try:                                                              # before MindSpore: errors come in a second
        if distributed:                                               # ranks not known yet: a copy, checked for 1
            _, spec = check_dataset(Config(config))                   # (batch_size auto is set per rank later)
        else:                                                         # the one check of this start
            checked = check_dataset(config)
            spec = checked[1]
        if config.resume:                                             # the checkpoint must fit data and config
            checked_resume(config.ckpt_path, config.ckpt_file_name_prefix, config.dataset_path, spec, lambda _: None)
    except (DatasetError, CheckpointError, ValueError) as exc:
        fail(str(exc), env_rank() if distributed else None, getattr(exc, "exit_code", 1))
    from src.model_utils.device_adapter import get_device_id
    from src.model_utils.moxing_adapter import moxing_wrapper
    from src.utils.runtime import DeviceUnavailable, setup_context
    try:
        setup_context(config.device_target, get_device_id(None if distributed else 0))
        moxing_wrapper(config)(train)(checked)
    except DeviceUnavailable as exc:
        fail(str(exc), env_rank() if distributed else None)


def train(checked: Optional[tuple] = None) -> None:
    """Start communication, check the dataset (unless `checked` holds its result for one process) and the memory
    estimate for this many ranks, train, report."""
    from src.data.packed_format import DatasetError
    from src.training.checkpoint import CheckpointError
    from src.training.advice import unusable_model
    from src.training.logs import format_eval
    from src.training.memory_estimate import budget_bytes, check_budget
    from src.training.parallel import init_parallel
    from src.training.preflight import check_dataset
    from src.training.trainer import Trainer, TrainingDiverged
    from src.utils.rank_report import report
    try:
        par = init_parallel(config.parallel_mode)
    except RuntimeError as exc:
        fail(str(exc))
    rank = par.rank if par.distributed else None
    if par.distributed:
        print(f"rank {par.rank} of {par.size} ({par.mode}), pid {os.getpid()}", flush=True)
    try:
        checked = checked or check_dataset(config, par.size)          # once for this many ranks
        rank_memory = check_budget(config, checked[1], par.size, budget_bytes(config))      # before allocating
        trainer = Trainer(config, parallel=par, checked=checked)
        if par.is_main:
            print(trainer.describe(rank_memory.total), flush=True)
            print("\n".join(rank_memory.lines()), flush=True)
        start = time.time()
        pos = trainer.run()
    except (DatasetError, CheckpointError, TrainingDiverged, ValueError) as exc:
        fail(str(exc), rank, getattr(exc, "exit_code", 1))
    if par.is_main:
        print(f"trained {pos['global_step']} steps in {time.time() - start:.1f}s; "
              f"checkpoint: {trainer.last_checkpoint or 'not saved (save_checkpoint=False)'}")
        if trainer.eval_results:
            final = trainer.eval_results[-1]
            print(unusable_model(final["auc"]) or f"final eval: {format_eval(final)}", flush=True)   # never below 0.5
    trainer.close()
    report("ok", par.rank, global_step=pos["global_step"], checkpoint=trainer.last_checkpoint,
           own_agreements=trainer.feed.own_agreements if par.hybrid else 0)


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        scheduler()
    elif config.plan_only:
        plan_only()
    else:
        main()

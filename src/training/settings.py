"""What the trainer reads from the config, as typed settings made once where the config meets the trainer
(`TrainSettings.from_config`): the Trainer holds these, not the config.

    settings = TrainSettings.from_config(cfg)     # after check_dataset has fixed batch_size auto to a number
    settings.checkpoints.folder, settings.evals.every_steps, settings.schedule.rates(step, last_step), ...
"""
from dataclasses import dataclass
from typing import Tuple

from src.training.schedule import Schedule


@dataclass(frozen=True)
class CheckpointSettings:
    """Where checkpoints go and which are kept (ckpt_path, ckpt_file_name_prefix, save_checkpoint,
    save_checkpoint_steps, keep_checkpoint_max, keep_best, resume)."""
    folder: str
    prefix: str
    save: bool
    every_steps: int
    keep: int
    keep_best: bool
    resume: bool


@dataclass(frozen=True)
class EvalSettings:
    """When training evaluates and what its validation evaluations decide (do_eval, eval_interval_steps,
    test_batch_size, target_auc, early_stop_patience)."""
    at_epoch_end: bool
    every_steps: int
    batch_size: int
    target_auc: float
    patience: int

    @property
    def any(self) -> bool:
        """Training evaluates at all."""
        return bool(self.at_epoch_end or self.every_steps)


@dataclass(frozen=True)
class LogSettings:
    """loss.log, eval.log, their interval, and the profiler (loss_file_name, eval_file_name, log_interval_steps,
    enable_profiling, output_path)."""
    loss_file: str
    eval_file: str
    every_steps: int
    profile: bool
    output_path: str


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run reads: the data stream, the device and precision, the optimizer's epsilons, the
    hybrid layout, the schedule, checkpoints, evaluations and logs. `batch_rule`: batch_size auto's one-line rule
    ("" for a batch given as a number)."""
    dataset_path: str
    batch_size: int
    epochs: int
    seed: int
    shuffle_buffer_records: int
    device_target: str
    fused_kernels: bool
    parallel_mode: str
    sharding_plan: Tuple[str, ...]
    convert_dtype: bool
    loss_scale: float
    adagrad_eps: float
    adam_eps: float
    batch_rule: str
    schedule: Schedule
    checkpoints: CheckpointSettings
    evals: EvalSettings
    logs: LogSettings

    @classmethod
    def from_config(cls, cfg) -> "TrainSettings":
        """The settings of a config (src/model_utils/config.py) whose batch_size is a number."""
        return cls(
            dataset_path=cfg.dataset_path, batch_size=int(cfg.batch_size), epochs=cfg.train_epochs,
            seed=cfg.random_seed, shuffle_buffer_records=cfg.shuffle_buffer_records, device_target=cfg.device_target,
            fused_kernels=cfg.device_target == "CPU" and cfg.cpu_kernels == "fused",
            parallel_mode=cfg.parallel_mode, sharding_plan=tuple(cfg.sharding_plan), convert_dtype=cfg.convert_dtype,
            loss_scale=cfg.loss_scale, adagrad_eps=cfg.adagrad_eps, adam_eps=cfg.adam_eps,
            batch_rule=getattr(cfg, "batch_rule", "") or "",
            schedule=Schedule(cfg.learning_rate, cfg.warmup_steps, cfg.decay_start_step, cfg.decay_steps,
                              bool(cfg.table_schedule)),
            checkpoints=CheckpointSettings(cfg.ckpt_path, cfg.ckpt_file_name_prefix, bool(cfg.save_checkpoint),
                                           cfg.save_checkpoint_steps, cfg.keep_checkpoint_max, bool(cfg.keep_best),
                                           bool(cfg.resume)),
            evals=EvalSettings(bool(cfg.do_eval), cfg.eval_interval_steps, cfg.test_batch_size, cfg.target_auc,
                               cfg.early_stop_patience),
            logs=LogSettings(cfg.loss_file_name, cfg.eval_file_name, cfg.log_interval_steps,
                             bool(cfg.enable_profiling), cfg.output_path))

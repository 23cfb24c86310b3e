"""The training loop: data, steps, loss/eval logs, checkpoints, resume, NaN stop."""
import os
import time

import numpy as np
import mindspore as ms
from mindspore import Tensor

from src import checkpoint
from src.dataset import PackedBatches, load_metadata, table_sizes_for
from src.metrics import CTRMetrics
from src.model.dlrm import DLRMProbability, build_model, model_size
from src.progress import Progress, background
from src.train_step import TrainStep


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def setup_context(cfg, device_id=0):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device(cfg.device_target, device_id)


def now():
    return time.strftime("%Y-%m-%d %H:%M:%S")


def append_line(path, line):
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def evaluate(prob_net, dataset_path, split, batch_size, progress=False):
    """Probabilities for every sample of a split -> accuracy/auc/logloss/samples plus time and rate."""
    batches = PackedBatches(dataset_path, split, batch_size)
    metrics = CTRMetrics()
    prog = Progress(f"eval {split}", batches.samples, "samples", enabled=progress)
    start = time.time()
    for ids, dense, label in background(iter(batches)):
        prob = prob_net(Tensor(ids), Tensor(dense)).asnumpy()
        metrics.update(prob, label)
        prog.update(len(label))
    result = metrics.result()
    result["eval_time"] = time.time() - start
    result["samples_per_s"] = result["samples"] / max(result["eval_time"], 1e-9)
    return result


def format_eval(result):
    return (f"accuracy: {result['accuracy']:.6f}, auc: {result['auc']:.6f}, logloss: {result['logloss']:.6f}, "
            f"samples: {result['samples']}, eval_time: {result['eval_time']:.2f}s, "
            f"samples/s: {result['samples_per_s']:.1f}")


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024.0
    return str(n)


class Trainer:
    """Builds the model for `cfg` and the dataset at cfg.dataset_path; `run()` trains."""

    def __init__(self, cfg, log=print, num_shards=1, shard_id=0):
        self.cfg = cfg
        self.log = log
        self.meta = load_metadata(cfg.dataset_path)
        self.table_sizes = table_sizes_for(cfg, self.meta)
        self.net = build_model(cfg, self.table_sizes)
        self.loss_scale = cfg.loss_scale if cfg.convert_dtype else 1.0
        self.step = TrainStep(self.net, cfg.optimizer, cfg.learning_rate, self.loss_scale)
        self.prob_net = DLRMProbability(self.net)
        self.num_shards, self.shard_id = num_shards, shard_id
        self.position = {"global_step": 0, "epoch": 0, "step_in_epoch": 0}
        self.last_checkpoint = None
        self.eval_results = []

    def state_params(self):
        return list(self.net.trainable_params()) + self.step.optimizer_state()

    def describe(self):
        s = model_size(self.net, self.cfg, self.cfg.batch_size)
        return (f"model: {len(self.table_sizes)} tables, {s['rows']:,} embedding rows x {self.cfg.data_emb_dim}, "
                f"{s['params']:,} parameters ({s['table_params']:,} embedding + {s['mlp_params']:,} MLP), "
                f"{human_bytes(s['param_bytes'])} parameters, {human_bytes(s['optimizer_state_bytes'])} optimizer "
                f"state ({self.cfg.optimizer}), checkpoint ~{human_bytes(s['checkpoint_bytes'])}, expected peak "
                f"memory ~{human_bytes(s['expected_peak_bytes'])}")

    def resume(self):
        cfg = self.cfg
        cands = checkpoint.list_checkpoints(cfg.ckpt_path, cfg.ckpt_file_name_prefix)
        if not cands:
            self.log(f"resume: no checkpoint '{cfg.ckpt_file_name_prefix}-*{checkpoint.EXT}' in "
                     f"{cfg.ckpt_path}; starting from scratch")
            return
        path = cands[-1]
        arrays, position = checkpoint.load(path)
        checkpoint.restore(self.state_params(), arrays, path)
        self.position = position
        self.last_checkpoint = path
        self.log(f"resumed from {path} at epoch {position['epoch'] + 1}, step {position['global_step']}")

    def save(self):
        cfg = self.cfg
        pos = self.position
        epoch = pos["epoch"] + 1 if pos["step_in_epoch"] else pos["epoch"]  # the epoch the last step was in
        path = os.path.join(cfg.ckpt_path, checkpoint.ckpt_name(cfg.ckpt_file_name_prefix, epoch,
                                                                 pos["global_step"]))
        checkpoint.save(path, self.state_params(), pos, keep=cfg.keep_checkpoint_max,
                        prefix=cfg.ckpt_file_name_prefix)
        self.last_checkpoint = path
        return path

    def run_eval(self, epoch, step):
        result = evaluate(self.prob_net, self.cfg.dataset_path, "test", self.cfg.test_batch_size)
        line = f"{now()} epoch: {epoch}, step: {step}, {format_eval(result)}"
        append_line(self.cfg.eval_file_name, line)
        self.log(line)
        self.eval_results.append(result)
        return result

    def run(self, max_steps=None):
        """Train cfg.train_epochs epochs (or stop after `max_steps` global steps, for tests)."""
        cfg = self.cfg
        if cfg.resume:
            self.resume()
        batches = PackedBatches(cfg.dataset_path, "train", cfg.batch_size, shuffle=True, seed=cfg.random_seed,
                                num_shards=self.num_shards, shard_id=self.shard_id, drop_remainder=True,
                                shuffle_buffer_records=cfg.shuffle_buffer_records)
        steps_per_epoch = len(batches)
        if steps_per_epoch == 0:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the training split "
                             f"({batches.samples} samples)")
        pos = self.position
        if pos["step_in_epoch"] >= steps_per_epoch:
            pos["epoch"] += 1
            pos["step_in_epoch"] = 0
        profiler = None
        if cfg.enable_profiling:
            from mindspore import Profiler
            profiler = Profiler(output_path=os.path.join(cfg.output_path, "profiler"))
        total_steps = steps_per_epoch * cfg.train_epochs
        prog = Progress("train", total_steps - pos["global_step"], "steps", every=10.0)
        window_start, window_samples = time.time(), 0
        saved_at = pos["global_step"]
        while pos["epoch"] < cfg.train_epochs:
            batches.epoch = pos["epoch"]
            batches.skip_batches = pos["step_in_epoch"]
            for ids, dense, label in background(iter(batches), depth=4):
                loss = float(self.step(Tensor(ids), Tensor(dense), Tensor(label)).asnumpy())
                pos["global_step"] += 1
                pos["step_in_epoch"] += 1
                window_samples += len(label)
                prog.update(1)
                if not np.isfinite(loss):
                    kept = self.last_checkpoint or "none saved yet"
                    raise TrainingDiverged(f"loss is {loss} at epoch {pos['epoch'] + 1}, step {pos['global_step']}: "
                                           f"training stopped; last good checkpoint: {kept}")
                gs = pos["global_step"]
                if gs % cfg.log_interval_steps == 0 or pos["step_in_epoch"] == steps_per_epoch:
                    rate = window_samples / max(time.time() - window_start, 1e-9)
                    append_line(cfg.loss_file_name, f"{now()} epoch: {pos['epoch'] + 1}, step: {gs}, "
                                                    f"loss is {loss:.6f}, samples/s: {rate:.1f}")
                    window_start, window_samples = time.time(), 0
                if cfg.save_checkpoint and gs % cfg.save_checkpoint_steps == 0:
                    self.save()
                    saved_at = gs
                if cfg.eval_interval_steps and gs % cfg.eval_interval_steps == 0 and \
                        pos["step_in_epoch"] != steps_per_epoch:
                    self.run_eval(pos["epoch"] + 1, gs)
                if max_steps is not None and gs >= max_steps:
                    return self._finish(profiler, saved_at)
            if cfg.do_eval:
                self.run_eval(pos["epoch"] + 1, pos["global_step"])
            pos["epoch"] += 1
            pos["step_in_epoch"] = 0
        prog.finish()
        return self._finish(profiler, saved_at)

    def _finish(self, profiler, saved_at):
        if profiler is not None:
            profiler.analyse()
        if self.cfg.save_checkpoint and saved_at != self.position["global_step"]:
            self.save()
        return self.position


"""The training loop: data, steps, loss/eval logs, checkpoints, resume, NaN stop; single process or
one rank of data/hybrid-parallel training (src/training/parallel.py and the modules it names)."""
import os
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import psutil
from mindspore import Tensor

from src.data.packed_format import shard_sizes
from src.data.reader import PackedBatches
from src.model.dlrm import build_model
from src.model.serving import DLRMProbability
from src.model_utils.spec import DLRMSpec
from src.training import checkpoint
from src.training.evaluation import evaluate, timed_metrics, train_click_rate
from src.training.logs import eval_line, loss_line
from src.training.memory_estimate import estimate
from src.training.preflight import check_dataset
from src.training.run_record import agreed_run, dataset_fingerprint, new_run, resumed, stamped
from src.training.advice import warmup_note
from src.training.settings import TrainSettings
from src.training.collectives import AllGatherCell, Barrier
from src.training.cost_model import exchange_is_alltoall
from src.training.exchange_feed import ExchangeFeed
from src.training.parallel import ParallelInfo
from src.training.sharded_lookup import ShardedLookup, ShardedProbability
from src.training.sharding import Router, make_plan
from src.training.train_step import make_train_step
from src.training.watch import ValidationWatch
from src.utils.progress import Progress, background, with_next
from src.utils.runtime import append_line, human_bytes


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Trainer:
    """Builds the model for the config `cfg` and the dataset at its dataset_path; `run()` trains. The trainer keeps the
    typed settings made from it (src/training/settings.py), not the config.

    With `parallel` (src.training.parallel.ParallelInfo, communication already initialised) this is one rank:
    it reads its shard of the data, holds its block of table rows (hybrid), writes loss.log/eval.log
    and merged checkpoints on rank 0 only, and evaluates its part of the test split."""

    def __init__(self, cfg, log: Callable[[str], None] = print, parallel: Optional[ParallelInfo] = None,
                 checked: Optional[Tuple[dict, DLRMSpec]] = None):
        """`checked`: check_dataset(cfg, ranks)'s (metadata, spec) when the caller has just run it (train.py), so
        that a start checks the dataset once; else it is run here."""
        self.par = parallel or ParallelInfo()
        self.log = log if self.par.is_main else (lambda *_: None)
        self.meta, self.spec = checked or check_dataset(cfg, self.par.size)      # batch_size auto: a number now
        self.settings = s = TrainSettings.from_config(cfg)       # the config ends here: the trainer holds these
        self.loss_scale = s.loss_scale if s.convert_dtype else 1.0
        self.plan = None
        if self.par.hybrid:
            self._build_hybrid()
        else:
            self.net = build_model(self.spec, s.seed, s.convert_dtype, cpu_kernels=s.fused_kernels)
            self.step = make_train_step(self.net, s.schedule.base, self.loss_scale, self.par,
                                        adagrad_eps=s.adagrad_eps, adam_eps=s.adam_eps)
            self.prob_net = DLRMProbability(self.net)
        if self.par.distributed:
            self.barrier, self.gather = Barrier(), AllGatherCell()
        gather = (lambda x: self.gather(Tensor(x)).asnumpy()) if self.par.distributed else None
        self.run_info = agreed_run(new_run(), gather)        # this run's id (rank 0's on every rank)
        self.dataset_info = dataset_fingerprint(s.dataset_path, self.meta)
        self.position = {"global_step": 0, "epoch": 0, "step_in_epoch": 0}
        self.layout = (self.par.size, s.batch_size)    # ranks x batch per rank of the data stream
        self.leftover = None                              # (ranks, batch, done) of the layout that began this epoch
        self.last_checkpoint = None
        self.saved_at = 0
        self.steps_per_epoch = 0
        self.current_lr = s.schedule.base
        self.last_step = 0                           # the run's last global step (set by run())
        self.eval_results = []
        self.eval_seconds = 0.0                     # evaluations' wall time, not training time (MLPerf's rule)
        self.train_start = time.time()
        # decisions read the validation split; without one, evaluations are on the test split and only report
        self.eval_split = "val" if self.meta["samples"].get("val", 0) else "test"
        self.train_ctr = train_click_rate(s.dataset_path)
        self.watch = ValidationWatch(keep_best=bool(s.checkpoints.keep_best and s.checkpoints.save),
                                     patience=s.evals.patience, target_auc=s.evals.target_auc)
        self.stop_reason = ""                       # why training ended before its last epoch ("" if it did not)
        self.best_checkpoint: Optional[str] = None
        self.reached: Optional[dict] = None         # target_auc: {auc, step, epoch, train_seconds, wall_seconds}
        self.on_eval: Optional[Callable[[Dict[str, float], int], None]] = None   # called after each validation
                                                    # evaluation with (metrics, step): the tuner's pruning

    def _build_hybrid(self) -> None:
        """This rank's part of the tables under the sharding plan, its train step and inference cell."""
        s = self.settings
        self.plan = make_plan(self.spec, self.par.size, s.sharding_plan, s.batch_size)
        router = Router(self.plan, self.par.rank)
        self.feed = ExchangeFeed(router)
        self.net = build_model(self.spec, s.seed, s.convert_dtype, self.plan.segments(self.par.rank),
                               s.fused_kernels)
        lookup = ShardedLookup(self.par, exchange_is_alltoall(s.device_target), router.rep_cols, router.ex_cols,
                               self.spec.emb_dim)
        self.step = make_train_step(self.net, s.schedule.base, self.loss_scale, self.par, lookup,
                                    self.plan.replicated_rows, s.adagrad_eps, s.adam_eps)
        self.prob_net = ShardedProbability(self.net, lookup)

    def state_params(self) -> list:
        """Everything a checkpoint holds: the model's parameters and the optimizer's state."""
        return list(self.net.trainable_params()) + self.step.optimizer_state()

    def model_description(self) -> dict:
        """What a checkpoint needs to rebuild the network and to recognise its dataset's ids."""
        desc = {"spec": self.spec.to_json(), "vocab_fingerprint": self.meta["vocab_fingerprint"],
                "run": stamped(self.run_info), "dataset": self.dataset_info}
        if self.plan:
            desc["sharding"] = self.plan.to_json()
        return desc

    def row_sharded_names(self) -> list:
        """Names of the state parameters split by rows across hybrid-parallel ranks."""
        return [p.name for p in self.net.row_sharded_params() + self.step.row_sharded_state()]

    def describe(self, peak: Optional[int] = None) -> str:
        """What is about to be trained: parallel layout, model size, memory estimate (`peak`: the estimate's total
        bytes when the caller has it, else estimated here)."""
        s = self.spec.sizes()
        peak = estimate(self.settings, self.spec, self.par.size).total if peak is None else peak
        par = ""
        if self.par.distributed:
            par = (f"{self.par.mode}, {self.par.size} ranks, batch {self.settings.batch_size} per rank "
                   f"({self.settings.batch_size * self.par.size} global)\n")
        note = warmup_note(self.spec.optimizer, self.settings.schedule.warmup_steps)
        if note:
            par += note + "\n"
        if self.settings.batch_rule:
            par += self.settings.batch_rule + "\n"
        return par + (f"model: {self.spec.slots} tables, {s['rows']:,} embedding rows x {self.spec.emb_dim}, "
                f"{s['params']:,} parameters ({s['table_params']:,} embedding + {s['mlp_params']:,} MLP), "
                f"{human_bytes(s['param_bytes'])} parameters, {human_bytes(s['optimizer_state_bytes'])} optimizer "
                f"state ({self.spec.optimizer.name}), checkpoint ~{human_bytes(s['checkpoint_bytes'])}, expected peak "
                f"memory ~{human_bytes(peak)}{' per rank' if self.par.distributed else ''}")

    def resume(self) -> None:
        """Continue from the newest checkpoint in ckpt_path: a single-device file, or a set of rank
        shards (from any number of ranks; a set from this layout is read one shard per rank)."""
        s = self.settings
        source = checkpoint.newest(s.checkpoints.folder, s.checkpoints.prefix, self.log)
        if source is None:
            self.log(f"resume: no checkpoint '{s.checkpoints.prefix}-*{checkpoint.EXT}' in "
                     f"{s.checkpoints.folder} or its rank_*/ folders; starting from scratch")
            return
        arrays, position, desc, model = checkpoint.load_rows(source, self.net.segments if self.plan else None)
        checkpoint.check_fits(model, desc, self.meta, s.dataset_path)
        checkpoint.check_same_model(model, desc, self.spec)
        checkpoint.restore(self.state_params(), arrays, desc)
        self.run_info = resumed(model, self.run_info)           # the resumed run goes on
        self.layout = (position.pop("data_shards", self.layout[0]), position.pop("data_batch", self.layout[1]))
        left = tuple(position.pop(k, 0) for k in ("leftover_shards", "leftover_batch", "leftover_done"))
        self.leftover = left if left[0] else None
        self.position = position
        self.last_checkpoint = desc
        self.log(f"resumed from {desc} at epoch {position['epoch'] + 1}, step {position['global_step']}")

    def _own_files(self) -> Tuple[str, Optional[dict]]:
        """(the folder this rank's checkpoints go to, the description of its rows or None): a hybrid rank writes its
        shard to ckpt_path/rank_K/, any other process the whole model to ckpt_path."""
        folder = self.settings.checkpoints.folder
        if not self.par.hybrid:
            return folder, None
        return checkpoint.rank_dir(folder, self.par.rank), {"rows": self.spec.total_rows, "rank": self.par.rank,
                                                            "size": self.par.size, "segments": self.net.segments}

    def save(self) -> str:
        """Single process / data parallel: rank 0 writes the checkpoint. Hybrid: every rank writes its
        shard to ckpt_path/rank_K/."""
        s = self.settings
        pos = dict(self.position)
        left = self.leftover or (0, 0, 0)
        if self.steps_per_epoch and pos["step_in_epoch"] >= self.steps_per_epoch:   # an epoch's end is the
            pos["epoch"], pos["step_in_epoch"], left = pos["epoch"] + 1, 0, (0, 0, 0)   # next epoch's start
        pos.update(data_shards=self.layout[0], data_batch=self.layout[1], leftover_shards=left[0],
                   leftover_batch=left[1], leftover_done=left[2])
        epoch = pos["epoch"] + 1 if pos["step_in_epoch"] else pos["epoch"]  # the epoch the last step was in
        folder, shard = self._own_files()
        path = os.path.join(folder, checkpoint.ckpt_name(s.checkpoints.prefix, epoch, pos["global_step"]))
        if shard or self.par.is_main:
            os.makedirs(folder, exist_ok=True)
            path = checkpoint.free_path(folder, s.checkpoints.prefix, epoch, pos["global_step"],
                                        self.run_info["id"])
            checkpoint.save(path, self.state_params(), pos, shard=shard, row_sharded=self.row_sharded_names(),
                            model=self.model_description())
            checkpoint.keep_newest(folder, s.checkpoints.prefix, s.checkpoints.keep, self.run_info["id"])
        self.last_checkpoint = path
        return path

    def save_best(self, epoch: int, step: int, result: Dict[str, float]) -> None:
        """keep_best: this run's best checkpoint (the model's parameters, no optimizer state), replaced at each better
        validation logloss; hybrid ranks write their shards, joined at the end of training (_finish)."""
        s = self.settings
        folder, shard = self._own_files()
        if shard or self.par.is_main:
            os.makedirs(folder, exist_ok=True)
            path = checkpoint.best_path(folder, s.checkpoints.prefix, self.run_info["id"])
            model = {**self.model_description(), "best": {"epoch": epoch, "step": step,
                                                          "val_logloss": result["logloss"], "val_auc": result["auc"]}}
            checkpoint.save(path, self.net.trainable_params(), {"global_step": step, "epoch": epoch, "step_in_epoch": 0},
                            shard=shard, row_sharded=[p.name for p in self.net.row_sharded_params()], model=model)
            self.best_checkpoint = path
        if self.par.distributed:
            self.barrier().asnumpy()                 # the file is whole before any rank may read it

    def _final_test(self) -> None:
        """The test split, evaluated once at the end of a run whose evaluations read the validation split: on the
        best checkpoint's weights (keep_best) or the newest, and labelled as such in eval.log."""
        if self.eval_split != "val" or not self.settings.evals.any:
            return
        model, at = "newest", (self.position["epoch"], self.position["global_step"])
        if self.best_checkpoint and self.watch.best:
            path = checkpoint.best_path(self._own_files()[0], self.settings.checkpoints.prefix, self.run_info["id"])
            arrays, _ = checkpoint.load(path)
            checkpoint.restore(self.net.trainable_params(), arrays, path)
            model, at = "best", (self.watch.best["epoch"], self.watch.best["step"])
        start = time.time()
        result = self._evaluate("test")
        self.eval_seconds += time.time() - start
        self._report(eval_line(f"split: test, model: {model}, epoch: {at[0]}, step: {at[1]}", result))
        self.eval_results.append(result)

    def _evaluate(self, split: str) -> Dict[str, float]:
        if not self.par.distributed:
            return evaluate(self.prob_net, self.settings.dataset_path, split, self.settings.evals.batch_size,
                            base_rate=self.train_ctr)
        return self._evaluate_distributed(split)

    def _evaluate_distributed(self, split: str):
        """Each rank predicts its block of the split; probabilities and labels are all-gathered and the metrics
        computed over every sample (not averaged over ranks). Hybrid ranks run the same number of equal-shaped
        batches (padded) because each lookup is a collective."""
        s, par = self.settings, self.par
        bs = s.evals.batch_size
        counts = shard_sizes(self.meta, split, par.size)
        steps = max(-(-c // bs) for c in counts)
        start = time.time()
        batches = iter(PackedBatches(s.dataset_path, split, bs, num_shards=par.size, shard_id=par.rank))
        probs, labels = [], []
        for _ in range(steps):
            batch = next(batches, None)
            if batch is None and not par.hybrid:
                break
            ids, dense, label = batch if batch is not None else (np.zeros((0, self.spec.lookups), np.int32),
                                                                    np.zeros((0, self.spec.dense_dim), np.float32),
                                                                    np.zeros((0, 1), np.float32))
            n = len(label)
            if par.hybrid:
                if n < bs:
                    ids = np.concatenate([ids, np.zeros((bs - n, ids.shape[1]), np.int32)])
                    dense = np.concatenate([dense, np.zeros((bs - n, dense.shape[1]), np.float32)])
                prob = self.prob_net(Tensor(dense), *self.feed.inputs(self.feed.router.route(ids), bs))
            else:
                prob = self.prob_net(Tensor(ids), Tensor(dense))
            probs.append(prob.asnumpy()[:n, 0])
            labels.append(label[:, 0])
        mine = np.zeros((max(counts), 2), np.float32)
        mine[:counts[par.rank], 0] = np.concatenate(probs) if probs else []
        mine[:counts[par.rank], 1] = np.concatenate(labels) if labels else []
        every = self.gather(Tensor(mine)).asnumpy().reshape(par.size, max(counts), 2)
        both = np.concatenate([every[k, :counts[k]] for k in range(par.size)])
        return timed_metrics(both[:, 0], both[:, 1], start, self.train_ctr)

    def run_eval(self, epoch: int, step: int) -> Dict[str, float]:
        """Evaluate on the validation split (the test split when the dataset has none), append the eval.log line (rank
        0) and keep the result. A validation result decides (training/watch.py): the best one so far is saved as the
        best checkpoint (keep_best), and early stop or a reached target_auc end training after this step."""
        start = time.time()
        result = self._evaluate(self.eval_split)
        self.eval_seconds += time.time() - start
        self._report(eval_line(f"split: {self.eval_split}, epoch: {epoch}, step: {step}", result))
        self.eval_results.append(result)
        if self.eval_split != "val":
            return result
        times = self._seconds()
        verdict = self.watch.observe(result, epoch, step, self._times(times))
        if verdict.best:
            self.save_best(epoch, step, result)
        for line in verdict.lines:
            self._report(line)
        if self.watch.reached and self.reached is None:
            self.reached = {**self.watch.reached, "train_seconds": times[0], "wall_seconds": times[1]}
        self.stop_reason = self.stop_reason or verdict.stop
        if self.on_eval is not None:
            self.on_eval(result, step)
        return result

    def _report(self, line: str) -> None:
        """A line for eval.log (rank 0) and the log."""
        if self.par.is_main:
            append_line(self.settings.logs.eval_file, line)
        self.log(line)

    def _seconds(self) -> Tuple[float, float]:
        """(training seconds without the evaluations since run() started, wall seconds since the process started:
        imports, data checks and compilation included)."""
        now = time.time()
        return now - self.train_start - self.eval_seconds, now - psutil.Process().create_time()

    def _times(self, seconds: Optional[Tuple[float, float]] = None) -> str:
        """'after T s of training (W s wall)' of `seconds` (default: now, see _seconds)."""
        train_s, wall_s = seconds or self._seconds()
        return f"after {train_s:.1f} s of training ({wall_s:.1f} s wall)"

    def _target_missed(self) -> None:
        """With target_auc, at the end of a run that never reached it: say so (not an error)."""
        if self.settings.evals.target_auc and self.reached is None and self.eval_results:
            best = max(range(len(self.eval_results)), key=lambda i: self.eval_results[i]["auc"])
            self._report(f"target auc {self.settings.evals.target_auc:g} not reached: best validation auc "
                         f"{self.eval_results[best]['auc']:.6f} in {len(self.eval_results)} evaluation(s), "
                         f"{self._times()}")

    def _train_batches(self) -> PackedBatches:
        """This rank's training stream; distributed ranks all run the smallest shard's step count."""
        s = self.settings
        batches = PackedBatches(s.dataset_path, "train", s.batch_size, shuffle=True, seed=s.seed,
                                num_shards=self.par.size, shard_id=self.par.rank, drop_remainder=True,
                                shuffle_buffer_records=s.shuffle_buffer_records)
        if self.par.distributed:
            batches.max_batches = min(shard_sizes(self.meta, "train", self.par.size)) // s.batch_size
        return batches

    def _schedule(self) -> None:
        """Set the learning rates of the coming step (global_step, 0-based) when the schedule changes them."""
        lr, table_lr = self.settings.schedule.rates(self.position["global_step"], self.last_step)
        if lr != self.current_lr:
            self.step.set_learning_rate(lr, table_lr)
            self.current_lr = lr

    def _after_step(self, loss: float, steps_per_epoch: int, window: list) -> None:
        """NaN stop, the loss.log line, periodic checkpoint and eval after one step."""
        s, pos = self.settings, self.position
        gs = pos["global_step"]
        if not np.isfinite(loss):
            kept = self.last_checkpoint or "none saved yet"
            raise TrainingDiverged(f"loss is {loss} at epoch {pos['epoch'] + 1}, step {gs}: "
                                   f"training stopped; last good checkpoint: {kept}")
        epoch_end = pos["step_in_epoch"] == steps_per_epoch
        if gs % s.logs.every_steps == 0 or epoch_end:
            rate = window[1] * self.par.size / max(time.time() - window[0], 1e-9)
            append_line(s.logs.loss_file if self.par.is_main else "", loss_line(pos["epoch"] + 1, gs, loss, rate))
            window[:] = [time.time(), 0]
        if s.checkpoints.save and gs % s.checkpoints.every_steps == 0:
            self.save()
            self.saved_at = gs
        if s.evals.every_steps and gs % s.evals.every_steps == 0 and not epoch_end:
            self.run_eval(pos["epoch"] + 1, gs)

    def run(self, max_steps: Optional[int] = None) -> Dict[str, int]:
        """Train s.epochs epochs (or stop after `max_steps` global steps, for tests); returns
        the position {global_step, epoch, step_in_epoch}."""
        s = self.settings
        if s.checkpoints.resume:
            self.resume()
        batches = self._train_batches()
        pos = self.position
        self._continue_epoch(batches)
        profiler = None
        if s.logs.profile:
            from mindspore import Profiler
            profiler = Profiler(output_path=os.path.join(s.logs.output_path, "profiler"))
        regular = batches.steps_per_epoch(*self.layout)
        remaining = len(batches) - pos["step_in_epoch"] + regular * (s.epochs - pos["epoch"] - 1)
        self.last_step = pos["global_step"] + remaining          # decay_steps = -1 decays to it
        prog = Progress("train", remaining, "steps", every=10.0, enabled=self.par.is_main)
        window = [time.time(), 0]                    # loss.log throughput window: start, samples
        self.saved_at = pos["global_step"]
        self.train_start, self.eval_seconds = time.time(), 0.0
        while pos["epoch"] < s.epochs:
            steps_per_epoch = self.steps_per_epoch = len(batches)
            source = self.feed.routed(iter(batches)) if self.par.hybrid else iter(batches)
            need = None                                  # hybrid: the next step's capacity, when agreed
            for (ids, dense, label), upcoming in with_next(background(source, depth=4)):
                self._schedule()
                if self.par.hybrid:                      # `ids` is the batch routed by self.feed
                    loss, need = self.feed.train_step(self.step, ids, dense, label, upcoming, need)
                else:
                    loss = float(self.step(Tensor(ids), Tensor(dense), Tensor(label)).asnumpy())
                pos["global_step"] += 1
                pos["step_in_epoch"] += 1
                window[1] += len(label)
                prog.update(1)
                self._after_step(loss, steps_per_epoch, window)
                if self.stop_reason or (max_steps is not None and pos["global_step"] >= max_steps):
                    return self._finish(profiler, max_steps is None)
            if s.evals.at_epoch_end:
                if pos["epoch"] + 1 == s.epochs:
                    self._save_if_new()          # the trained state is on disk before the last evaluation
                self.run_eval(pos["epoch"] + 1, pos["global_step"])
            pos["epoch"] += 1
            pos["step_in_epoch"] = 0
            self.leftover = None
            if self.stop_reason:
                break
        prog.finish()
        self._target_missed()
        return self._finish(profiler)

    def _continue_epoch(self, batches: PackedBatches) -> None:
        """Point `batches` at the resumed position: a position at its epoch's end is the next epoch's start; the
        rest of an epoch continues in this run's layout (the same stream, or the leftover stream of another layout:
        reader.PackedBatches.continue_epoch), and this run records its position in this layout from then on."""
        pos, here = self.position, (self.par.size, self.settings.batch_size)
        batches.epoch = pos["epoch"]
        if pos["step_in_epoch"]:
            end = batches.steps_per_epoch(*self.layout)
            if self.leftover:                        # the length of the leftover stream in the saved layout
                probe = PackedBatches(self.settings.dataset_path, "train", self.layout[1], num_shards=self.layout[0])
                probe.continue_epoch(pos["step_in_epoch"], self.layout, self.leftover)
                end = len(probe)
            if pos["step_in_epoch"] >= end:
                pos["epoch"], pos["step_in_epoch"], self.leftover = pos["epoch"] + 1, 0, None
                batches.epoch = pos["epoch"]
        pos["step_in_epoch"], self.leftover = batches.continue_epoch(pos["step_in_epoch"], self.layout, self.leftover)
        self.layout = here

    def close(self) -> None:
        """Distributed: every rank reaches this point, then communication is released, so that no rank
        tears MindSpore down while another still talks to it (a rank crashing in its exit path was seen
        under load)."""
        if self.par.distributed:
            from mindspore.communication import release
            self.barrier().asnumpy()
            release()

    def _save_if_new(self) -> None:
        if self.settings.checkpoints.save and self.saved_at != self.position["global_step"]:
            self.save()
            self.saved_at = self.position["global_step"]

    def _finish(self, profiler, final: bool = True) -> Dict[str, int]:
        """Save the last state (joining hybrid shards), and at the end of a run (`final`: not a max_steps stop) report
        the test split once."""
        if profiler is not None:
            profiler.analyse()
        self._save_if_new()
        if self.par.hybrid and self.settings.checkpoints.save:
            self.barrier().asnumpy()                 # every shard of this step is on disk
            if self.par.is_main:
                self.last_checkpoint = checkpoint.merge(self.settings.checkpoints.folder, self.settings.checkpoints.prefix,
                                                        self.position["global_step"], self.run_info["id"])
                self.log(f"merged {self.par.size} shards into {self.last_checkpoint}")
                if self.best_checkpoint:
                    self.best_checkpoint = checkpoint.merge_best(self.settings.checkpoints.folder, self.settings.checkpoints.prefix,
                                                                 self.run_info["id"])
        if self.stop_reason and self.par.is_main:
            self.log(f"training stopped at epoch {self.position['epoch'] + 1}, step "
                     f"{self.position['global_step']}: {self.stop_reason}")
        if final:
            self._final_test()
        return self.position


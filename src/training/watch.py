"""The decisions training takes from its validation evaluations: keep the best checkpoint, stop early, stop at a target
AUC, and say when the model has started to overfit. The test split never reaches here: it only reports.

    watch = ValidationWatch(keep_best=True, patience=3, target_auc=0.0)
    verdict = watch.observe(result, epoch, step)     # result: evaluation.evaluate's metrics on the validation split
    verdict.best      -> this evaluation has the lowest validation logloss so far: save it as the best checkpoint
    verdict.stop      -> why training stops after this evaluation ("" to go on)
    verdict.lines     -> lines for eval.log and the log (the overfitting line, the early stop, the target reached)

Overfitting: when the validation logloss rises past its minimum by more than OVERFIT_MARGIN of it, one line names the
epoch and step, the one-epoch overfitting of deep CTR models (Zhang et al., CIKM 2022: their embeddings memorise the
first epoch's samples) and the step of the best checkpoint, once a run.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

OVERFIT_MARGIN = 0.01          # relative rise of the validation logloss over its minimum that is called overfitting


@dataclass
class Verdict:
    """What one validation evaluation decides (see the module docstring)."""
    best: bool = False
    stop: str = ""
    lines: List[str] = field(default_factory=list)


@dataclass
class ValidationWatch:
    """Keeps the best validation logloss and where it was; `observe` decides after each validation evaluation."""
    keep_best: bool
    patience: int = 0                  # early stop after this many evaluations without a better logloss (0 = off)
    target_auc: float = 0.0            # stop at the first evaluation at or above it (0 = off)
    best: Optional[Dict[str, float]] = None
    since_best: int = 0
    warned: bool = False
    reached: Optional[dict] = None

    def observe(self, result: Dict[str, float], epoch: int, step: int, times: str = "") -> Verdict:
        """The verdict of a validation result (accuracy, auc, logloss, ...) at (epoch, step); `times`: the time so far
        in words, for the target line."""
        out, early = Verdict(), ""
        loss = result["logloss"]
        if self.best is None or loss < self.best["logloss"]:
            self.best = {"logloss": loss, "auc": result["auc"], "epoch": epoch, "step": step}
            self.since_best = 0
            out.best = self.keep_best
        else:
            self.since_best += 1
            if not self.warned and loss > self.best["logloss"] * (1 + OVERFIT_MARGIN):
                self.warned = True
                out.lines.append(self.overfit_line(loss, epoch, step))
            if self.patience and self.since_best >= self.patience:
                early = (f"early stop: the validation logloss has not improved for {self.since_best} evaluations "
                            f"(best {self.best['logloss']:.6f} at epoch {self.best['epoch']}, step {self.best['step']}; "
                            f"early_stop_patience {self.patience})")
        if self.target_auc and self.reached is None and result["auc"] >= self.target_auc:
            self.reached = {"auc": result["auc"], "step": step, "epoch": epoch}
            out.stop = f"target_auc {self.target_auc:g} reached"
            out.lines.append(f"reached auc {result['auc']:.6f} at step {step}, epoch {epoch}, {times}; target_auc "
                             f"{self.target_auc:g}")
        if early:                                    # the early stop wins over a target reached in the same evaluation
            out.stop = early
            out.lines.append(early)
        return out

    def overfit_line(self, loss: float, epoch: int, step: int) -> str:
        """The one line that says the model has started to overfit."""
        b = self.best
        kept = (f"keep_best kept the checkpoint of step {b['step']}" if self.keep_best else
                "keep_best is off: the newest checkpoint is the overfitted one")
        return (f"overfitting: the validation logloss {loss:.6f} at epoch {epoch}, step {step} is "
                f"{100 * (loss / b['logloss'] - 1):.1f}% above its minimum {b['logloss']:.6f} (epoch {b['epoch']}, "
                f"step {b['step']}): the one-epoch overfitting of deep CTR models, whose embeddings memorise the "
                f"samples of the first epoch (Zhang et al., CIKM 2022); {kept}")

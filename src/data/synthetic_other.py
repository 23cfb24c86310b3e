"""A second synthetic click log in the Criteo layout, built unlike src/data/synthetic.py, so that a recipe chosen on
one generator can be checked on data it was not tuned on.

    python -m src.data.synthetic_other --out DIR/train.txt --lines 1000000 [--prob_file DIR/train_prob.npy]

What differs from the first generator (its structure, not only its numbers):
  * interactions: third-order (three slots' latent vectors multiplied and summed over the dimensions) and dense x
    categorical (a slot's value sets the slope of a dense feature), instead of pairwise dot products;
  * dense effects are non-linear (a saturating step on I3, a bump on I9), instead of linear in log(1 + x);
  * other slots carry the signal, and their values' effects are heavy-tailed (Student t) over the 8,192 most frequent
    values; the ids follow flatter power laws (exponents 0.6-0.95: many more rare ids), and four slots are uniform;
  * missing values are independent per column at their own rates, and one is missing not at random (C19 is missing
    more often when the click is likelier), instead of the real file's blocks;
  * dense counts are zero-inflated geometric-like draws instead of log-normal ones, and the click rate is about 17%.
"""
import argparse
import os
from typing import List, Optional, Tuple

import numpy as np
import pyarrow as pa

from src.data.synthetic import N_DENSE, N_SLOTS, criteo_table, write_text

CARDINALITY = [900, 40, 3_000_000, 800_000, 120, 9, 25_000, 300, 4, 60_000, 7_000, 1_500_000, 2_000, 15,
               30_000, 900_000, 6, 4_000, 1_000, 3, 1_200_000, 12, 20, 150_000, 60, 80_000]
UNIFORM = (5, 8, 19, 21)                     # slots whose values are equally likely
EFFECT_SLOTS = (2, 3, 6, 9, 11, 14, 23)      # slots whose values move the click rate on their own
TRIPLES = ((2, 6, 23), (3, 9, 14), (0, 11, 25))   # third-order interactions
SLOPE_SLOT, SLOPE_DENSE = 7, 4               # C8's value sets the slope of log(1 + I5)
DENSE_MISSING = [0.30, 0.0, 0.15, 0.25, 0.05, 0.40, 0.10, 0.02, 0.35, 0.20, 0.60, 0.12, 0.08]
CAT_MISSING = [0.01] * N_SLOTS
TOP = 8192                                   # the values that carry effects and latent vectors
DIM = 3


class OtherModel:
    """The hidden click model of the second generator; fixed by `seed`."""

    def __init__(self, seed: int, vocab_scale: float):
        rng = np.random.default_rng([seed, 7])
        self.card = np.maximum(3, (np.array(CARDINALITY) * vocab_scale).astype(np.int64))
        self.zipf_a = rng.uniform(0.6, 0.95, N_SLOTS)
        self.key_mult = (rng.integers(1, 2 ** 31, N_SLOTS) * 2 + 1).astype(np.uint64)
        self.key_add = rng.integers(0, 2 ** 32, N_SLOTS).astype(np.uint64)
        self.effect = (0.25 * rng.standard_t(3, (N_SLOTS, TOP))).astype(np.float32)
        self.latent = rng.normal(0.0, 0.9, (N_SLOTS, TOP, DIM)).astype(np.float32)
        self.slope = rng.normal(0.0, 0.35, TOP).astype(np.float32)
        self.zero_rate = rng.uniform(0.1, 0.6, N_DENSE)
        self.scale = rng.uniform(1.0, 60.0, N_DENSE)
        self.intercept = -1.75

    def ranks(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, 26] int64 value ranks: truncated power laws, uniform for the UNIFORM slots."""
        u = rng.random((n, N_SLOTS))
        a = self.zipf_a[None, :]
        card = self.card[None, :].astype(np.float64)
        r = np.power(1.0 + u * (np.power(card + 1.0, 1.0 - a) - 1.0), 1.0 / (1.0 - a)) - 1.0
        r = np.where(np.isin(np.arange(N_SLOTS), UNIFORM)[None, :], u * card, r)
        return np.minimum(r.astype(np.int64), self.card[None, :] - 1)

    def keys(self, ranks: np.ndarray) -> np.ndarray:
        """Bijective rank -> 32-bit value per slot: int64 [n, 26] -> uint32 [n, 26]."""
        k = (ranks.astype(np.uint64) * self.key_mult[None, :] + self.key_add[None, :]) & np.uint64(0xFFFFFFFF)
        return k.astype(np.uint32)

    def logit(self, dense_log: np.ndarray, ranks: np.ndarray, cat_missing: np.ndarray) -> np.ndarray:
        """True click logit float32 [n]: dense_log float32 [n, 13], ranks int64 [n, 26], cat_missing bool [n, 26]."""
        known = (ranks < TOP) & ~cat_missing
        r = np.where(known, ranks, 0)
        z = np.full(len(ranks), self.intercept, np.float32)
        z += 0.8 * np.tanh(dense_log[:, 2] - 2.5) - 0.15 * (dense_log[:, 8] - 2.0) ** 2
        for s in EFFECT_SLOTS:
            z += np.where(known[:, s], self.effect[s, r[:, s]], 0.0)
        for a, b, c in TRIPLES:
            both = known[:, a] & known[:, b] & known[:, c]
            prod = (self.latent[a, r[:, a]] * self.latent[b, r[:, b]] * self.latent[c, r[:, c]]).sum(1)
            z += np.where(both, 0.6 * prod, 0.0)
        z += np.where(known[:, SLOPE_SLOT], self.slope[r[:, SLOPE_SLOT]], 0.0) * (dense_log[:, SLOPE_DENSE] - 1.5)
        return z


def other_chunk(model: OtherModel, seed: int, chunk_index: int, n: int,
                day: Optional[int] = None) -> Tuple["pa.Table", np.ndarray]:
    """(pyarrow Table of the 40 Criteo columns, true probabilities float32 [n]) of one chunk (no day files)."""
    rng = np.random.default_rng([seed, 9, chunk_index])
    zero = rng.random((n, N_DENSE)) < model.zero_rate[None, :]
    counts = np.where(zero, 0, np.floor(rng.exponential(model.scale[None, :], (n, N_DENSE)))).astype(np.int64)
    dense_missing = rng.random((n, N_DENSE)) < np.array(DENSE_MISSING)[None, :]
    dense_log = np.log1p(np.where(dense_missing, 0, counts)).astype(np.float32)
    ranks = model.ranks(rng, n)
    cat_missing = rng.random((n, N_SLOTS)) < np.array(CAT_MISSING)[None, :]
    logit = model.logit(dense_log, ranks, cat_missing)
    # missing not at random: C19 is left out more often on lines that are likelier clicks
    cat_missing[:, 18] |= rng.random(n) < 0.5 / (1.0 + np.exp(-(logit + 1.0)))
    logit = logit + np.where(cat_missing[:, 18], 0.3, 0.0)
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < prob).astype(np.int64)
    keys = model.keys(ranks)
    return criteo_table(label, counts, dense_missing, keys, cat_missing), prob.astype(np.float32)


def generate_other(out_path: str, lines: int, seed: int = 77, vocab_scale: float = 0.25,
                   prob_file: Optional[str] = None, chunk: int = 200_000, progress: bool = True) -> str:
    """Write `lines` lines of the second generator to out_path (atomically); optional true probabilities."""
    if lines <= 0:
        raise ValueError(f"--lines must be > 0, got {lines}")
    probs = write_text(out_path, OtherModel(seed, vocab_scale), seed, lines, chunk, None, progress, other_chunk)
    if prob_file:
        tmp = f"{prob_file}.tmp-{os.getpid()}.npy"
        np.save(tmp, np.concatenate(probs))
        os.replace(tmp, prob_file)
    return out_path


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.data.synthetic_other --out DIR/train.txt --lines N [--prob_file ...]`"""
    ap = argparse.ArgumentParser(description="Write train.txt from the second synthetic generator (Criteo layout)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--lines", type=int, required=True)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--vocab_scale", type=float, default=0.25, help="fraction of its vocabulary sizes")
    ap.add_argument("--prob_file", default=None, help="also write true click probabilities (.npy)")
    args = ap.parse_args(argv)
    generate_other(args.out, args.lines, args.seed, args.vocab_scale, args.prob_file)


if __name__ == "__main__":
    main()

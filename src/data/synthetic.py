"""Synthetic Criteo-format click logs with a planted model.

Writes `train.txt` in the raw Kaggle layout (label, I1..I13, C1..C26; tab separated, no header)
with the real file's structure (facts in the README, section "Data"):
  * dense counts are heavy-tailed (log-normal), only I2 goes negative (down to -3);
  * missing values come in the real blocks: {I1,I10} 45%, {I4,I13} 21%, {I7,I9,I11} 5%, I12 77%,
    {C3,C4,C12,C16,C21,C24} 3.6%, {C19,C20,C25,C26} 44%, C22 80%;
  * categorical values are Zipf-like ranks over per-slot vocabularies scaled from the Kaggle
    table sizes, written as 8 lowercase hex digits;
  * labels ~ Bernoulli(sigmoid(logit)), where the logit has dense terms, per-value biases and
    pairwise latent interactions between slots (what DLRM's dot interaction can learn), and a
    missing I1 lowers the click rate as in the real data.
`--prob_file` also writes every line's true click probability (float32 .npy), so a model's AUC can
be compared with the best achievable one on the same lines.

    python -m src.data.synthetic --out DIR/train.txt --lines 1000000 [--prob_file DIR/train_prob.npy]
    python -m src.data.synthetic --out_dir DIR --days 24 --lines 200000 [--gzip]    # day_0 .. day_23
Day files (the Terabyte layout) drift from day to day: values change popularity, new values appear
and the click rate follows a weekly cycle, so that a held-out last day behaves like the real one.
"""
import argparse
import os
import sys
import time
from typing import Callable, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

KAGGLE_SIZES = [1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
                14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572]
N_DENSE, N_SLOTS = 13, 26
DENSE_BLOCKS = [((0, 9), 0.45), ((3, 12), 0.21), ((6, 8, 10), 0.05), ((11,), 0.77)]
CAT_BLOCKS = [((2, 3, 11, 15, 20, 23), 0.036), ((18, 19, 24, 25), 0.44), ((21,), 0.80)]
# log-normal (mu, sigma) of 1 + count per dense column, roughly the Kaggle medians/tails.
DENSE_LOGN = [(0.8, 1.2), (1.5, 1.8), (2.3, 1.3), (1.7, 1.0), (7.5, 2.2), (3.5, 1.9), (1.8, 1.5),
              (2.5, 1.1), (3.6, 1.3), (0.4, 0.5), (1.1, 1.0), (0.3, 0.8), (1.8, 1.1)]
LATENT_DIM = 4
LATENT_RANKS = 2048          # the most frequent values of each slot carry a latent vector
INTERACTING = (0, 1, 4, 5, 6, 8, 13, 16, 19, 21, 22)  # slots whose values interact pairwise
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class PlantedModel:
    """The hidden click model; fixed by `seed`, independent of the line count."""

    def __init__(self, seed: int, vocab_scale: float):
        rng = np.random.default_rng([seed, 0])
        self.card = np.maximum(3, (np.array(KAGGLE_SIZES) * vocab_scale).astype(np.int64))
        self.card = np.minimum(self.card, np.array(KAGGLE_SIZES))
        self.zipf_a = rng.uniform(0.9, 1.3, N_SLOTS)           # steepness of each slot's rank law
        self.key_mult = (rng.integers(1, 2 ** 31, N_SLOTS) * 2 + 1).astype(np.uint64)  # odd => bijective
        self.key_add = rng.integers(0, 2 ** 32, N_SLOTS).astype(np.uint64)
        self.latent = rng.normal(0.0, 0.30, (N_SLOTS, LATENT_RANKS, LATENT_DIM)).astype(np.float32)
        self.bias = rng.normal(0.0, 0.12, (N_SLOTS, LATENT_RANKS)).astype(np.float32)
        self.dense_w = rng.normal(0.0, 0.12, N_DENSE).astype(np.float32)
        self.dense_center = np.array([m for m, _ in DENSE_LOGN], np.float32)
        self.intercept = -1.25

    def sample_ranks(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """[n, 26] int64 value ranks (0 = most frequent) from truncated power laws."""
        u = rng.random((n, N_SLOTS))
        a = self.zipf_a[None, :]
        card = self.card[None, :].astype(np.float64)
        # inverse CDF of p(r) ~ (r+1)^-a on [0, card): continuous approximation
        one_minus = 1.0 - a
        top = np.power(card + 1.0, one_minus)
        r = np.power(1.0 + u * (top - 1.0), 1.0 / one_minus) - 1.0
        return np.minimum(r.astype(np.int64), self.card[None, :] - 1)

    def keys(self, ranks: np.ndarray) -> np.ndarray:
        """Bijective map rank -> 32-bit categorical value per slot: int64 [n, 26] -> uint32 [n, 26]."""
        k = (ranks.astype(np.uint64) * self.key_mult[None, :] + self.key_add[None, :]) & np.uint64(0xFFFFFFFF)
        return k.astype(np.uint32)

    def logit(self, dense_log: np.ndarray, dense_missing: np.ndarray, ranks: np.ndarray,
              cat_missing: np.ndarray) -> np.ndarray:
        """True click logit float32 [n] from dense_log float32 [n, 13], dense_missing bool [n, 13],
        ranks int64 [n, 26] and cat_missing bool [n, 26]."""
        n = ranks.shape[0]
        z = np.full(n, self.intercept, np.float32)
        z += ((dense_log - self.dense_center[None, :]) * self.dense_w[None, :]).sum(1)
        z -= 0.6 * dense_missing[:, 0]                      # missing I1 lowers the CTR
        known = (ranks < LATENT_RANKS) & ~cat_missing
        r = np.where(known, ranks, 0)
        slot_idx = np.arange(N_SLOTS)[None, :]
        z += np.where(known, self.bias[slot_idx, r], 0.0).sum(1)
        vec = np.where(known[:, :, None], self.latent[slot_idx, r], 0.0)[:, list(INTERACTING), :]
        s = vec.sum(1)
        z += 0.5 * ((s * s).sum(1) - (vec * vec).sum((1, 2)))  # sum over pairs a<b of <u_a, u_b>
        return z


def criteo_table(label: np.ndarray, counts: np.ndarray, dense_missing: np.ndarray, keys: np.ndarray,
                 cat_missing: np.ndarray) -> pa.Table:
    """Lines in the Criteo layout as an Arrow table (label, I1..I13, C1..C26): label int64 [n], counts int [n, 13]
    with dense_missing bool [n, 13], keys uint32 [n, 26] (written as 8 hex digits) with cat_missing bool [n, 26]."""
    cols, names = [pa.array(label)], ["label"]
    for j in range(N_DENSE):
        cols.append(pa.array(counts[:, j], mask=dense_missing[:, j]))
        names.append(f"I{j + 1}")
    for j in range(N_SLOTS):
        cols.append(pa.array(hex8(keys[:, j]), type=pa.binary(), mask=cat_missing[:, j]))
        names.append(f"C{j + 1}")
    return pa.table(cols, names=names)


def hex8(keys: np.ndarray) -> np.ndarray:
    """uint32 [n] -> numpy 'S8' lowercase hex strings."""
    shifts = np.arange(28, -1, -4, dtype=np.uint32)
    nib = (keys[:, None] >> shifts[None, :]) & np.uint32(15)
    return HEX[nib].view("S8").reshape(-1)


DRIFT_STEP = 32            # day files: a slot's popular values move this many ranks a day
NEW_VALUE_RATE = 0.05      # day files: this fraction of values are new on their day (never seen before it)


def drift(model: PlantedModel, rng: np.random.Generator, ranks: np.ndarray, day: int) -> np.ndarray:
    """Day-file drift of value identities: int64 ranks [n, 26] -> int64 values [n, 26].

    On day d the value at rank r is r + d * DRIFT_STEP (mod the slot's vocabulary) for slots of more than
    1000 values, so popularity moves from day to day while a value keeps its effect on clicks; a
    NEW_VALUE_RATE share of those slots' values are drawn from a range used by day d only (new values)."""
    big = model.card > 1000
    vals = np.where(big[None, :], (ranks + day * DRIFT_STEP) % model.card[None, :], ranks)
    new = (rng.random(ranks.shape) < NEW_VALUE_RATE) & big[None, :]
    fresh = model.card[None, :] + day * 1_000_000 + rng.integers(0, 100_000, ranks.shape)
    return np.where(new, fresh, vals)


def generate_chunk(model: PlantedModel, seed: int, chunk_index: int, n: int,
                   day: Optional[int] = None) -> Tuple["pa.Table", np.ndarray]:
    """Returns (pyarrow Table of the 40 columns, true probabilities float32 [n]). `day` (day files) adds
    the day-to-day drift: values move (`drift`) and the click rate follows a weekly cycle."""
    rng = np.random.default_rng([seed, 1, chunk_index] if day is None else [seed, 2, day, chunk_index])
    dense_missing = np.zeros((n, N_DENSE), bool)
    for cols, p in DENSE_BLOCKS:
        m = rng.random(n) < p
        for c in cols:
            dense_missing[:, c] |= m
    cat_missing = np.zeros((n, N_SLOTS), bool)
    for cols, p in CAT_BLOCKS:
        m = rng.random(n) < p
        for c in cols:
            cat_missing[:, c] |= m
    mu = np.array([m for m, _ in DENSE_LOGN])[None, :]
    sd = np.array([s for _, s in DENSE_LOGN])[None, :]
    counts = np.floor(np.exp(rng.normal(mu, sd, (n, N_DENSE)))).astype(np.int64) - 1
    neg = rng.random(n) < 0.03
    counts[:, 1] = np.where(neg, -rng.integers(1, 4, n), counts[:, 1])  # I2: occasionally -1..-3
    counts[:, [0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]] = np.maximum(counts[:, [0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]], 0)
    counts[:, 4] = np.maximum(counts[:, 4], 0)
    dense_log = np.log1p(np.maximum(np.where(dense_missing, 0, counts), 0)).astype(np.float32)
    ranks = model.sample_ranks(rng, n)
    logit = model.logit(dense_log, dense_missing, ranks, cat_missing) if day is None else \
        model.logit(dense_log, dense_missing, (ranks := drift(model, rng, ranks, day)), cat_missing) + \
        0.25 * np.sin(2 * np.pi * day / 7)
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < prob).astype(np.int64)
    keys = model.keys(ranks)
    return criteo_table(label, counts, dense_missing, keys, cat_missing), prob.astype(np.float32)


def _default_scale(lines: int) -> float:
    # Vocabularies grow with the data as in the real logs: ~1/4 of the Kaggle size at 45.8M lines.
    return min(1.0, max(1e-3, lines / 45_840_617 * 0.25)) ** 0.5


def write_text(out_path: str, model: PlantedModel, seed: int, lines: int, chunk: int, day: Optional[int],
                progress: bool, make_chunk: Optional[Callable] = None) -> List[np.ndarray]:
    """Write one file atomically (gzip when out_path ends with .gz); returns the true probabilities. `make_chunk`:
    (model, seed, chunk index, n, day) -> (table, probabilities), generate_chunk by default (another generator's own:
    src/data/synthetic_other.py)."""
    make_chunk = make_chunk or generate_chunk
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    probs = []
    opts = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    start = time.time()
    try:
        with pa.OSFile(tmp, "wb") as raw:
            sink = pa.CompressedOutputStream(raw, "gzip") if out_path.endswith(".gz") else raw
            done = 0
            for ci, lo in enumerate(range(0, lines, chunk)):
                n = min(chunk, lines - lo)
                table, prob = make_chunk(model, seed, ci, n, day)
                pacsv.write_csv(table, sink, opts)
                probs.append(prob)
                done += n
                if progress:
                    rate = done / max(time.time() - start, 1e-9)
                    sys.stderr.write(f"\rsynthetic {os.path.basename(out_path)}: {done:,}/{lines:,} lines, "
                                     f"{rate:,.0f} lines/s, ETA {(lines - done) / rate:,.0f}s ")
            if sink is not raw:
                sink.close()
        if progress:
            sys.stderr.write("\n")
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return probs


def generate_days(out_dir: str, days: int, lines_per_day: int, seed: int = 2024, vocab_scale: Optional[float] = None,
                  gzip: bool = False, chunk: int = 200_000, progress: bool = True) -> List[str]:
    """Write day_0 .. day_{days-1} (.gz with gzip) of lines_per_day lines each, with day-to-day drift
    (`drift`, a weekly click-rate cycle); returns their paths. The vocabulary scale follows the total."""
    if days < 2 or lines_per_day <= 0:
        raise ValueError(f"--days must be >= 2 and --lines > 0, got {days} and {lines_per_day}")
    model = PlantedModel(seed, _default_scale(days * lines_per_day) if vocab_scale is None else vocab_scale)
    paths = []
    for d in range(days):
        paths.append(os.path.join(out_dir, f"day_{d}" + (".gz" if gzip else "")))
        write_text(paths[-1], model, seed, lines_per_day, chunk, d, progress)
    return paths


def generate(out_path: str, lines: int, seed: int = 2024, vocab_scale: Optional[float] = None,
             prob_file: Optional[str] = None, chunk: int = 200_000, progress: bool = True) -> str:
    """Write `lines` synthetic lines to out_path (atomically); optional true probabilities to prob_file."""
    if lines <= 0:
        raise ValueError(f"--lines must be > 0, got {lines}")
    model = PlantedModel(seed, _default_scale(lines) if vocab_scale is None else vocab_scale)
    probs = write_text(out_path, model, seed, lines, chunk, None, progress)
    if prob_file:
        p = np.concatenate(probs)
        ptmp = f"{prob_file}.tmp-{os.getpid()}.npy"
        np.save(ptmp, p)
        os.replace(ptmp, prob_file)
    return out_path


def main(argv: Optional[List[str]] = None) -> None:
    """`python -m src.data.synthetic --out DIR/train.txt --lines N [--prob_file ...]`"""
    ap = argparse.ArgumentParser(description="Write a synthetic Criteo-format train.txt, or day files")
    ap.add_argument("--out", help="output file, e.g. data/synthetic/train.txt")
    ap.add_argument("--out_dir", help="with --days: the folder for day_0 .. day_{D-1}")
    ap.add_argument("--days", type=int, default=0, help="write this many day files (Terabyte layout)")
    ap.add_argument("--gzip", action="store_true", help="with --days: write day_N.gz")
    ap.add_argument("--lines", type=int, required=True, help="lines (with --days: per day)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--vocab_scale", type=float, default=None,
                    help="fraction of the Kaggle vocabulary sizes (default grows with --lines)")
    ap.add_argument("--prob_file", default=None, help="also write true click probabilities (.npy)")
    args = ap.parse_args(argv)
    if args.days:
        if not args.out_dir:
            ap.error("--days needs --out_dir")
        generate_days(args.out_dir, args.days, args.lines, args.seed, args.vocab_scale, args.gzip)
    elif args.out:
        generate(args.out, args.lines, args.seed, args.vocab_scale, args.prob_file)
    else:
        ap.error("give --out FILE, or --days D --out_dir DIR")


if __name__ == "__main__":
    main()

"""Preprocessing suites: Kaggle-layout and day-file inputs, workers, gzip, memory against input size, the full Kaggle
size, and your own CSV (with a multi-hot column).

    python -m src.tools.benchmark preprocess | preprocess_workers | csv | csv_multihot | terabyte | memory_flat | kaggle_size
"""
import json
import os
import shutil
import time

import numpy as np

from src.tools.benchmarks.common import SGD, config_file, day_files, ensure_synthetic, gb, gzip_of, preprocess_cmd, run_child, run_sampled


CSV_SPEC = """files: [clicks.csv]
format: csv
header: true
label: click
dense: [price, age, score]
categorical: [user, item, city, device, site, campaign]
"""


def write_clicks_csv(path: str, lines: int, seed: int = 0, tags: bool = False) -> None:
    """A 10-column CSV with a header (label, 3 numbers, 6 string categories of Zipf-like frequencies; some fields
    quoted with a comma inside, some missing), the own-data benchmark's input; with `tags`, an 11th column of 0-8
    `|`-separated tags (Zipf-like over 2,000)."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write("click,price,age,score,user,item,city,device,site,campaign" + (",tags\n" if tags else "\n"))
        for lo in range(0, lines, 200_000):
            n = min(200_000, lines - lo)
            cols = [(rng.random(n) < 0.25).astype(int).astype(str),
                    np.char.mod("%.2f", rng.lognormal(3, 1, n)), rng.integers(15, 80, n).astype(str),
                    np.where(rng.random(n) < 0.1, "", np.char.mod("%.4f", rng.normal(0, 1, n)))]
            for name, vocab in (("u", 200_000), ("i", 50_000), ("c", 300), ("d", 40), ("s", 5_000), ("k", 1_000)):
                v = np.char.add(name, np.minimum(rng.zipf(1.3, n), vocab).astype(str))
                if name == "c":
                    v = np.where(rng.random(n) < 0.2, np.char.add(np.char.add('"', v), ', FR"'), v)
                cols.append(np.where(rng.random(n) < 0.05, "", v))
            if tags:
                count = rng.integers(0, 9, n)
                values = np.char.add("t", np.minimum(rng.zipf(1.3, int(count.sum())), 2000).astype(str)).tolist()
                at = np.concatenate(([0], np.cumsum(count)))
                cols.append(np.array(["|".join(values[at[i]:at[i + 1]]) for i in range(n)]))
            rows = cols[0]
            for c in cols[1:]:
                rows = np.char.add(np.char.add(rows, ","), c)
            f.write("\n".join(rows.tolist()) + "\n")


def child_preprocess_csv(data_dir, lines, workers):
    """Preprocess the own-data CSV with its feature spec on `workers` workers."""
    from src.model_utils.config import parse_cli
    from src.data.preprocess import preprocess
    cfg = parse_cli([f"--data_path={data_dir}", f"--feature_spec={os.path.join(data_dir, 'spec.yaml')}",
                     f"--workers={workers}"])
    t = time.time()
    meta = preprocess(cfg, progress=False)
    return {"seconds": time.time() - t, "lines": lines, "rows": meta["total_rows"]}


def bench_preprocess_csv(work, lines=1_000_000, tags=False):
    """Own-data preprocessing speed: a 10-column CSV (header, quoting, missing values) on 1 and 2 workers; with
    `tags`, an 11th column read as multi_hot (max_len 8)."""
    d = os.path.join(work, f"csv_{lines}" + ("_tags" if tags else ""))
    if not os.path.isfile(os.path.join(d, "clicks.csv")):
        os.makedirs(d, exist_ok=True)
        write_clicks_csv(os.path.join(d, "clicks.csv"), lines, tags=tags)
        with open(os.path.join(d, "spec.yaml"), "w") as f:
            f.write(CSV_SPEC + ("multi_hot:\n  - {name: tags, separator: '|', max_len: 8}\n" if tags else ""))
    print(f"== preprocess your own CSV ({lines:,} lines x {11 if tags else 10} columns: label, 3 numbers, 6 string "
          f"categories{', a multi-hot column of 0-8 tags' if tags else ''}; header, quoted fields, missing values; "
          f"vocabulary mode)")
    for workers in (1, 2):
        res, peak = run_child("preprocess_csv", d, str(lines), str(workers))
        print(f"workers={workers}: {lines / res['seconds']:,.0f} lines/s ({lines / res['seconds'] / workers:,.0f} "
              f"per worker, {res['seconds']:.2f}s in-process), peak RSS {gb(peak)}, {res['rows']:,} embedding rows")


def child_preprocess(data_dir, lines):
    from src.model_utils.config import parse_cli
    from src.data.preprocess import preprocess
    cfg = parse_cli([f"--data_path={data_dir}", f"--train_line_count={lines}"])
    t = time.time()
    meta = preprocess(cfg, progress=False)
    return {"seconds": time.time() - t, "lines": lines, "rows": meta["total_rows"], "phases": meta["phase_times"]}


def child_pandas_parse(data_dir, strings="default"):
    """Seconds for pandas.read_csv of the folder's train.txt (tab-separated, no header): the parse-only yardstick.
    strings "default": pandas' own choice (pandas 3: Arrow-backed strings); "str": dtype=str for the 26 categorical
    columns."""
    import pandas as pd
    dtype = {c: str for c in range(14, 40)} if strings == "str" else None
    t = time.time()
    frame = pd.read_csv(os.path.join(data_dir, "train.txt"), sep="\t", header=None, dtype=dtype)
    return {"seconds": time.time() - t, "lines": len(frame), "pandas": pd.__version__}


def bench_preprocess_vs_pandas(work, lines=1_000_000, rounds=3):
    """preprocess (in-process seconds, phases) against a plain pandas parse of the same file, interleaved."""
    d = ensure_synthetic(work, lines)
    print(f"== preprocess vs pandas.read_csv of the same {lines:,}-line file, interleaved x{rounds}")
    ratios = {"default": [], "str": []}
    for r in range(rounds):
        pre, _ = run_child("preprocess", d, str(lines))
        line = f"round {r + 1}: preprocess {pre['seconds']:.2f}s ({pre['phases']})"
        for kind in ratios:
            pan, _ = run_child("pandas_parse", d, kind)
            ratios[kind].append(pre["seconds"] / pan["seconds"])
            line += f"; pandas {pan['pandas']} ({kind} strings) {pan['seconds']:.2f}s: {ratios[kind][-1]:.2f}x"
        print(line, flush=True)
    for kind, got in ratios.items():
        print(f"preprocess / pandas parse ({kind} strings): median {float(np.median(got)):.2f}x (target <= 1.3x)")


def _mixed_days(work):
    """4 synthetic day files of 250,000 lines, the last gzip-compressed (made once)."""
    d = os.path.join(work, "days_4x250000_mixed")
    if not os.path.isfile(os.path.join(d, "day_3.gz")):
        plain = day_files(work, 4, 250_000)
        os.makedirs(d, exist_ok=True)
        for k in range(3):
            shutil.copyfile(os.path.join(plain, f"day_{k}"), os.path.join(d, f"day_{k}"))
        gzip_of([os.path.join(plain, "day_3")], os.path.join(d, "day_3.gz"))
    return d


def _big_gzip_day(work):
    """day_0.gz of 1,000,000 lines (4 pieces) and day_1 of 100,000 (made once from the 500k-line day files): one gzip
    task holds most of the work."""
    d = os.path.join(work, "days_gz1000000_100000")
    if not os.path.isfile(os.path.join(d, "day_1")):
        src = day_files(work, 8, 500_000)
        os.makedirs(d, exist_ok=True)
        gzip_of([os.path.join(src, "day_0"), os.path.join(src, "day_1")], os.path.join(d, "day_0.gz"))
        with open(os.path.join(src, "day_2"), "rb") as f, open(os.path.join(d, "day_1.tmp"), "wb") as g:
            g.writelines(line for _, line in zip(range(100_000), f))
        os.replace(os.path.join(d, "day_1.tmp"), os.path.join(d, "day_1"))
    return d


def bench_preprocess_workers(work, rounds=2):
    """Worker counts against each other on day files, hashing (MLPerf's max_ind_range), command wall time with process
    start, interleaved `rounds` times: 1M lines in 4 files (one gzip), a gzip file of 1M lines beside a plain one of
    100k, 4M lines in 8 plain files; workers 1, auto, 2, and 1 held to one core; per run the phase times preprocessing prints."""
    print("== preprocessing workers (day files, hashing max_ind_range=40M; command wall time including process start; "
          f"{rounds} interleaved rounds, the best of each)")
    # "1 on one core": workers=1 held to one CPU (taskset), so its tokeniser runs on one thread: the rate of one core
    variants = {"1": [], "auto": [], "2": [], "1 on one core": ["taskset", "-c", "0"] if shutil.which("taskset") else None}
    for name, d, lines in (("1M lines in 4 day files of 250k (day_3.gz)", _mixed_days(work), 1_000_000),
                           ("1.1M lines: a gzip day file of 1M, a plain one of 100k", _big_gzip_day(work), 1_100_000),
                           ("4M lines in 8 day files of 500k", day_files(work, 8, 500_000), 4_000_000)):
        walls, phases = {}, {}
        for r in range(rounds):
            for w in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                if variants[w] is None:
                    continue
                out = []
                cmd = variants[w] + preprocess_cmd(d, f"--workers={w.split()[0]}", "--max_ind_range=40000000")
                wall, _, _ = run_sampled(cmd, stdout=out)
                walls.setdefault(w, []).append(wall)
                phases[w] = next((x for x in out[0].splitlines() if x.startswith("wall time by phase")), "")
        for w in walls:
            best = min(walls[w])
            print(f"{name}, workers={w}: {lines / best:,.0f} lines/s ({best:.1f} s; {min(walls['1']) / best:.2f}x "
                  f"workers=1); {phases[w]}", flush=True)


def bench_terabyte(work, device):
    """Day files: workers 1 vs 2, memory flat in the lines, the full Kaggle size, 24 days then one epoch."""
    print("== terabyte layout (day files; command wall time including process start, peak memory = PSS of all "
          "processes)")
    mlperf = "--max_ind_range=40000000"
    small, big = day_files(work, 8, 125_000), day_files(work, 8, 500_000)
    rates = {}
    for mode, extra in (("hash (MLPerf max_ind_range=40M)", [mlperf]), ("vocabulary (threshold 1)", [])):
        for w in (1, 2):
            wall, pss, rss = run_sampled(preprocess_cmd(big, f"--workers={w}", *extra))
            rates[(mode, w)] = 4_000_000 / wall
            print(f"day files 8 x 500,000 lines, {mode}, workers={w}: {4_000_000 / wall:,.0f} lines/s ({wall:.1f}s), "
                  f"peak memory {gb(pss)} (largest process {gb(rss)})")
        print(f"  workers=2 / workers=1: {rates[(mode, 2)] / rates[(mode, 1)]:.2f}x")
    bench_memory_flat(small, big, mlperf)
    bench_kaggle_size(work)
    bench_24_days(work, device)


def bench_memory_flat(small, big, *extra):
    """Peak memory for 1M and 4M lines with the same settings (16 MiB pieces and 100k-line parts, so that
    both sets are made of full pieces and parts: memory is per piece and per part, not per line)."""
    mem = {}
    for d, n in ((small, 1_000_000), (big, 4_000_000)):
        wall, pss, rss = run_sampled(preprocess_cmd(d, "--workers=2", "--chunk_bytes=16777216",
                                                     "--shuffle_bucket_lines=100000", *extra))
        mem[n] = pss
        print(f"memory vs lines: {n:,} lines, workers=2, hash, chunk_bytes 16 MiB, 100k-line parts: peak memory "
              f"{gb(pss)} (largest process {gb(rss)})")
    print(f"  peak memory 4M / 1M lines: {mem[4_000_000] / mem[1_000_000]:.2f}x")


def bench_kaggle_size(work):
    """45,840,617 synthetic lines with Kaggle-size vocabularies, vocabulary mode, the default worker count."""
    lines = 45_840_617
    d = os.path.join(work, "kaggle_full")
    if not os.path.isfile(os.path.join(d, "train.txt")):
        from src.data.synthetic import generate
        generate(os.path.join(d, "train.txt"), lines, vocab_scale=1.0)
    out = []
    wall, pss, rss = run_sampled(preprocess_cmd(d, f"--train_line_count={lines}"), stdout=out)
    meta = json.load(open(os.path.join(d, "mindrecord", "metadata.json")))
    print(next((x for x in out[0].splitlines() if x.startswith("wall time by phase")), ""))
    print(f"Kaggle size: {lines:,} lines, {meta['total_rows']:,} embedding rows (threshold 1), default workers: "
          f"{wall / 60:.1f} min ({lines / wall:,.0f} lines/s), peak memory {gb(pss)} (largest process {gb(rss)})")


def bench_24_days(work, device):
    """24 synthetic days of 200,000 lines: preprocess (max_ind_range 1M), one epoch at batch 16384, eval."""
    d = day_files(work, 24, 200_000)
    wall, pss, rss = run_sampled(preprocess_cmd(d, "--workers=2", "--max_ind_range=1000000"))
    print(f"24 days x 200,000 lines, max_ind_range=1,000,000, workers=2: preprocess {wall:.0f}s "
          f"({4_800_000 / wall:,.0f} lines/s), peak memory {gb(pss)}")
    config = config_file(device)
    res, peak = run_child("train_epoch", os.path.join(d, "mindrecord"), device, config, *SGD, "--batch_size=16384")
    samples = res["steps"] * res["batch"]
    print(f"  train one epoch, batch 16384, {res['steps']} steps over {samples:,} samples (26 x 1M rows x dim 16): "
          f"{samples / res['train_seconds']:,.0f} samples/s, peak RSS {gb(peak)}; held-out day_23: "
          f"auc {res['auc']:.4f}, logloss {res['logloss']:.4f}")


# ---------------------------------------------------------------- suites
def bench_preprocess(work):
    print("== preprocess (synthetic Criteo text -> packed MindRecord, default workers: count lines, parse pieces, "
          "merge counts, write parts)")
    rss = {}
    for lines in (1_000_000, 4_000_000):
        d = ensure_synthetic(work, lines)
        t = time.time()
        res, peak = run_child("preprocess", d, str(lines))
        wall = time.time() - t
        rss[lines] = peak
        print(f"preprocess {lines:>9,} lines: {lines / res['seconds']:,.0f} lines/s in-process "
              f"({res['seconds']:.2f}s), {lines / wall:,.0f} lines/s with process start ({wall:.2f}s), "
              f"peak RSS {gb(peak)}, {res['rows']:,} embedding rows")
    print(f"peak RSS 4M / 1M = {rss[4_000_000] / rss[1_000_000]:.2f}x")

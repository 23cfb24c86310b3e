"""A bounded load test of serve.py on loopback: C clients each send POST /predict requests of R rows back to back over
one keep-alive connection, until the requests are done or the time is up, whichever comes first; the server's memory
is sampled meanwhile.

    python -m src.tools.load_test --port=PORT --lines=FILE [--rows=100] [--clients=64] [--requests=2000] [--seconds=30]

FILE holds raw lines in the model's training layout (Criteo: the TSV lines); requests take consecutive lines of it,
as {"lines": [...]}. Prints one line: rows/s, p50/p99 latency (ms), requests answered and their statuses, and the
server's RSS at the start and its peak. Traffic goes to 127.0.0.1 only.
"""
import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = re.compile(r"on http://127\.0\.0\.1:(\d+) ")


@contextlib.contextmanager
def serving(bundle: str, log_dir: str, *args: str, timeout: float = 60) -> Iterator[Tuple[subprocess.Popen, int]]:
    """serve.py on a free loopback port for the block: (its process, its port), once it answers GET /health; it is
    stopped with SIGTERM after the block (killed if it has not ended 30 s later). Its output goes to
    log_dir/serve.out and serve.err."""
    os.makedirs(log_dir, exist_ok=True)
    out, err = os.path.join(log_dir, "serve.out"), os.path.join(log_dir, "serve.err")
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, "serve.py", f"--model_path={bundle}", "--port=0", f"--host={HOST}",
                                 *args], cwd=ROOT, stdout=o, stderr=e, env=dict(os.environ, GLOG_v="3"))
    try:
        deadline = time.time() + timeout
        while not (LISTENING.search(open(out).read()) and _healthy(int(LISTENING.search(open(out).read())[1]))):
            if proc.poll() is not None:
                raise RuntimeError(f"serve.py ended with {proc.returncode}: {open(err).read()[-1500:]}")
            if time.time() > deadline:
                raise RuntimeError("serve.py did not start answering GET /health")
            time.sleep(0.05)
        yield proc, int(LISTENING.search(open(out).read()).group(1))
    finally:
        stop(proc)


def _healthy(port: int) -> bool:
    """True when the server on `port` answers GET /health with 200."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM to a server, then its exit code (killed after `timeout` s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def _client(port: int, bodies: List[bytes], deadline: float, latencies: List[float],
                  statuses: Dict[int, int]) -> None:
    """One client: its requests back to back over one connection (HTTP/1.1 keep-alive)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for body in bodies:
            if time.perf_counter() > deadline:
                return
            head = (f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            start = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def _rss(pid: Optional[int]) -> int:
    if pid is None:
        return 0
    import psutil
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


async def _sample_memory(pid: Optional[int], samples: List[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(_rss(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except asyncio.TimeoutError:
            pass


async def _load(port: int, lines: List[str], rows: int, clients: int, requests: int, seconds: float,
                pid: Optional[int]) -> dict:
    per_client = -(-requests // clients)
    bodies = [[json.dumps({"lines": [lines[((c * per_client + i) * rows + j) % len(lines)] for j in range(rows)]}
                          ).encode() for i in range(per_client)] for c in range(clients)]
    latencies: List[float] = []
    statuses: Dict[int, int] = {}
    memory: List[int] = [_rss(pid)]
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_memory(pid, memory, stop))
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, b, start + seconds, latencies, statuses) for b in bodies))
    wall = time.perf_counter() - start
    stop.set()
    await sampler
    lat = np.array(latencies) * 1000.0
    ok = statuses.get(200, 0)
    return {"rows": rows, "clients": clients, "requests": len(lat), "statuses": statuses, "seconds": wall,
            "rows_per_s": ok * rows / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "rss_start": memory[0], "rss_peak": max(memory),
            "rss_end": memory[-1]}


def run_load(port: int, lines: List[str], rows: int, clients: int, requests: int, seconds: float,
             pid: Optional[int] = None) -> dict:
    """One load level (module docstring) -> {rows_per_s, p50_ms, p99_ms, requests, statuses, rss_start, rss_peak,
    rss_end, ...}; `pid`: the server's process, whose RSS is sampled every 0.2 s."""
    return asyncio.run(_load(port, lines, rows, clients, requests, seconds, pid))


def describe(r: dict) -> str:
    """One line of a run_load result."""
    return (f"{r['rows']:>3} rows x {r['clients']:>2} clients: {r['rows_per_s']:>9,.0f} rows/s, p50 {r['p50_ms']:6.2f} "
            f"ms, p99 {r['p99_ms']:6.2f} ms ({r['requests']:,} requests in {r['seconds']:.1f} s, statuses "
            f"{r['statuses']}); server RSS {r['rss_start'] / 2 ** 20:,.0f} MB at the start, peak "
            f"{r['rss_peak'] / 2 ** 20:,.0f} MB, end {r['rss_end'] / 2 ** 20:,.0f} MB")


def main(argv=None) -> None:
    """`python -m src.tools.load_test --port=PORT --lines=FILE ...` (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m src.tools.load_test", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--lines", required=True, help="raw lines in the model's training layout")
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--pid", type=int, default=None, help="the server's process id (its memory is sampled)")
    args = ap.parse_args(argv)
    lines = open(args.lines, encoding="utf-8").read().splitlines()
    print(describe(run_load(args.port, lines, args.rows, args.clients, args.requests, args.seconds, args.pid)))


if __name__ == "__main__":
    main()

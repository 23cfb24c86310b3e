"""The online scoring server (serve.py): a model bundle behind HTTP, on Starlette and uvicorn.

    POST /predict    {"rows": [{column: value, ...}, ...]} or {"lines": ["raw line", ...]} (src/inference/requests.py)
                     -> 200 {"probabilities": [p, ...]}, each what predict.py gives for the same row;
                     400 {"error": "..."} naming the first problem (row and column; an oversized body);
                     503 {"error": "..."} at once when max_queue_rows rows are queued already
    GET  /health     200 {"status": "ok"} (the model is loaded before the port is opened)
    GET  /metadata   the features, the model's checksum and runtime, the creating command, the checkpoint and step

A request's body is checked and turned into lines in a thread pool beside the event loop; the lines of concurrent
requests are parsed, transformed and scored together in micro-batches (src/inference/batcher.py). SIGTERM (or Ctrl-C) stops taking connections, lets the requests in flight finish, and
exits 0. A request's failure never reaches another request or the server.
"""
import asyncio
import contextlib
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from src.inference.batcher import MicroBatcher, Overloaded
from src.inference.bundle import Bundle
from src.inference.requests import RequestError, score_lines, to_lines

if TYPE_CHECKING:                 # annotations only: Starlette loads when the app is built
    from starlette.applications import Starlette


@dataclass(frozen=True)
class ServerSettings:
    """The serving keys of the config."""
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_rows: int = 4096
    max_wait_ms: float = 2.0
    max_queue_rows: int = 65536
    max_body_bytes: int = 8 << 20
    runtime: str = "auto"


PARSE_THREADS = 2           # threads that read request bodies (JSON, rows to lines) beside the event loop


def metadata(bundle: Bundle, runtime: str) -> dict:
    """GET /metadata's answer (`runtime`: the one serving)."""
    record = bundle.manifest["record"]
    model_file = bundle.manifest["models"][runtime]
    return {"features": [f.record() for f in bundle.spec.features], "ids_per_sample": bundle.spec.lookups,
            "model_file": model_file, "model_sha256": bundle.manifest["files"][model_file]["sha256"],
            "runtime": runtime, "command": bundle.manifest["command"], "created": bundle.manifest["created"],
            "checkpoint": record["checkpoint"], "step": record["step"], "train_ctr": bundle.train_ctr}


async def read_body(request, limit: int) -> bytes:
    """The request's body; RequestError when it is larger than `limit` bytes (refused before it is read whole)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the body of {int(declared):,} bytes is larger than max_body_bytes={limit:,}; send fewer "
                           f"rows a request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(f"the body is larger than max_body_bytes={limit:,}; send fewer rows a request")
    return bytes(body)


def build_app(bundle: Bundle, settings: ServerSettings, log: Callable[[str], None] = print) -> "Starlette":
    """The Starlette application of an opened bundle (its model loaded in the lifespan's start)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    state = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        model = bundle.model(0, settings.runtime)
        state["batcher"] = MicroBatcher(lambda reqs: score_lines(bundle.transform, model.predict, reqs),
                                        settings.max_batch_rows, settings.max_wait_ms, settings.max_queue_rows)
        state["batcher"].start()
        state["parse"] = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="parse")
        yield
        await state["batcher"].stop()
        state["parse"].shutdown(wait=True)
        log(f"served {state['batcher'].rows:,} rows in {state['batcher'].batches:,} batches; stopped")

    async def predict(request):
        try:
            body = await read_body(request, settings.max_body_bytes)
            lines = await asyncio.get_running_loop().run_in_executor(state["parse"], to_lines, bundle.transform,
                                                                     body)
            prob = await state["batcher"].submit(lines, lines.n) if lines.n else np.zeros(0, np.float32)
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Overloaded as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"probabilities": prob.astype(float).tolist()})

    async def health(request):
        return JSONResponse({"status": "ok"})

    info = metadata(bundle, bundle.pick(settings.runtime))

    async def meta(request):
        return JSONResponse(info)

    routes = [Route("/predict", predict, methods=["POST"]), Route("/health", health, methods=["GET"]),
              Route("/metadata", meta, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan)


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port (port 0: a free port the system picks)."""
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it an
    # answer's two writes (head, body) meet the client's delayed ACK: 40 ms a request (docs/serving.md)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(bundle: Bundle, settings: ServerSettings, log: Callable[[str], None] = print,
          ready: Optional[Callable[[int], None]] = None) -> None:
    """Run the server until SIGTERM or SIGINT; the requests in flight finish, then this returns (exit 0)."""
    import uvicorn
    sock = bound_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(bundle, settings, log), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=30, limit_concurrency=None, backlog=2048)
    server = uvicorn.Server(config)
    # uvicorn raises the signal again once it has shut down gracefully; this handler makes that a normal exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log(f"serving {bundle.path} on http://{settings.host}:{port} (POST /predict, GET /health, GET /metadata); "
        f"micro-batches of up to {settings.max_batch_rows} rows or {settings.max_wait_ms:g} ms, queue "
        f"{settings.max_queue_rows} rows")
    if ready is not None:
        ready(port)
    server.run(sockets=[sock])


def settings_from(cfg) -> ServerSettings:
    """The serving keys of a config."""
    return ServerSettings(host=cfg.host, port=cfg.port, max_batch_rows=cfg.max_batch_rows,
                          max_wait_ms=cfg.max_wait_ms, max_queue_rows=cfg.max_queue_rows,
                          max_body_bytes=cfg.max_body_bytes, runtime=cfg.runtime)

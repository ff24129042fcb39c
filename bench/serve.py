"""The Ray Serve app (``rayjobs/serve.py``) under concurrent clients posting real clips.

Starts a local Ray cluster and the app on 127.0.0.1 with a random-weight checkpoint of the
given backbone (what it does to the numbers is its size, not its weights), then, for each client
count, posts ``--requests`` synthetic H.264 clips (real and fake faces) from that many threads
and reports requests/s, p50 and p99 latency and errors, with the batching settings.

    PYTHONPATH=. python bench/serve.py --clients 1 8 32 --requests 64 --json serve.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.detect import clips, write_checkpoint


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: bytes) -> tuple[float, bool]:
    """Seconds until the answer, and whether it was a scored record."""
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=600) as answer:
            ok = answer.status == 200 and json.loads(answer.read())["error"] is None
    except (urllib.error.URLError, TimeoutError, ValueError):
        ok = False
    return time.perf_counter() - start, ok


def load(url: str, bodies: list[tuple[str, bytes]], clients: int, requests: int) -> dict:
    jobs = [bodies[i % len(bodies)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda job: post(f"{url}/detect?filename={job[0]}", job[1]), jobs))
    elapsed = time.perf_counter() - start
    latencies = sorted(seconds for seconds, _ in results)
    return {
        "clients": clients,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "errors": sum(not ok for _, ok in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="posts per client count")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--clip-frames", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8, help="frames scored per clip")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--backbone", default="legacy_xception")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--clips-dir", help="keep the generated clips here (reused when present)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    import ray
    from ray import serve

    from rayjobs import serve as app_module

    figures: dict = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "args": vars(args),
        "batching": {
            "max_batch_size": app_module.MAX_BATCH,
            "batch_wait_timeout_s": app_module.BATCH_WAIT_S,
        },
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as directory:
        height = args.width * 9 // 16 // 2 * 2
        where = Path(args.clips_dir) if args.clips_dir else Path(directory) / "clips"
        paths = clips(where, args.clips, args.clip_frames, args.width, height)
        bodies = [(p.name, p.read_bytes()) for p in paths]
        checkpoint = write_checkpoint(Path(directory) / "model", args.backbone, args.image_size,
                                      args.crop_size, args.frames)  # fmt: skip
        ray.init(num_cpus=max(4, 2 * (os.cpu_count() or 1)), log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app_module.app({"model": str(checkpoint)}), name="sffb", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        post(f"{url}/detect?filename={bodies[0][0]}", bodies[0][1])  # warm-up
        print("| clients | requests | requests/s | p50 s | p99 s | errors |")
        print("|---:|---:|---:|---:|---:|---:|")
        for clients in args.clients:
            row = load(url, bodies, clients, max(args.requests, clients))
            figures["rows"].append(row)
            print(f"| {clients} | {row['requests']} | {row['requests_per_s']:.2f} | "
                  f"{row['p50_s']:.2f} | {row['p99_s']:.2f} | {row['errors']} |")  # fmt: skip
        serve.shutdown()
        ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

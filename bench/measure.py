"""Wall time and peak RSS of a child process tree, sampled with psutil every 20 ms.

Peak RSS is the largest *sum* of the resident set sizes of the child and all its descendants seen at
one sample. Summing RSS counts shared pages (libraries, copy-on-write) once per process, so the figure
is an upper bound of the memory the tree really holds; it is what a container limit sees roughly.
Sampling misses spikes shorter than the interval.

CPU seconds (user + system) come from ``getrusage(RUSAGE_CHILDREN)`` around the run: the child and every
descendant it waited for. On a shared, busy machine they are steadier than wall time; the benchmarks
print both.

The child runs in its own session; on timeout, and in any case at the end, every process of the tree
that is still alive (including orphans that re-parented to init, found by the pids recorded while
sampling) is killed, so a benchmark never leaves a crawler or an ephemeral Prefect server behind.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL_SECONDS = 0.020
MIB = 1024 * 1024


@dataclass(frozen=True)
class Measurement:
    """What one measured run produced."""

    command: list[str]
    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    peak_processes: int
    samples: int
    timed_out: bool
    stdout_path: Path
    stderr_path: Path

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / MIB

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def tail(self, lines: int = 20) -> str:
        """The last lines of stderr then stdout, for error messages."""
        text = (self.stderr() + "\n" + self.stdout()).strip().splitlines()
        return "\n".join(text[-lines:])


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` from ``/proc/PID/task/*/children`` (None where Linux offers no such file).

    A few small reads per process, where psutil's ``children()`` reads the status of every process on the
    machine: at 20 ms a sample that scan cost the sampler 3 ms each, an eighth of a core taken from
    the measured crawl on a two-core machine.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    children: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                children.extend(int(token) for token in handle.read().split())
        except FileNotFoundError:
            if tid == str(pid):
                return None  # the kernel has no children file at all
        except OSError:
            continue  # the thread ended meanwhile
    return children


def _proc_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class _Sampler:
    root: psutil.Process
    interval: float
    peak_rss: int = 0
    peak_processes: int = 0
    samples: int = 0
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    use_proc: bool = field(default_factory=lambda: _proc_children(os.getpid()) is not None)

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def _proc_tree(self) -> list[int]:
        pids, index = [self.root.pid], 0
        while index < len(pids):
            pids.extend(_proc_children(pids[index]) or [])
            index += 1
        return pids

    def sample_once(self) -> None:
        if self.use_proc:
            self._sample_proc()
            return
        total = 0
        processes = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
            processes += 1
            self.seen.setdefault(proc.pid, proc)
        self._record(total, processes)

    def _sample_proc(self) -> None:
        total = 0
        processes = 0
        for pid in self._proc_tree():
            rss = _proc_rss(pid)
            if rss is None:
                continue
            total += rss
            processes += 1
            if pid not in self.seen:
                with contextlib.suppress(psutil.Error):
                    self.seen[pid] = psutil.Process(pid)
        self._record(total, processes)

    def _record(self, total: int, processes: int) -> None:
        self.samples += 1
        self.peak_rss = max(self.peak_rss, total)
        self.peak_processes = max(self.peak_processes, processes)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample_once()
            self.stop.wait(self.interval)


def kill_tree(processes: Sequence[psutil.Process], grace_seconds: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_seconds``, every process still alive in ``processes``."""
    alive = [p for p in processes if p.is_running()]
    for proc in alive:
        try:
            proc.terminate()
        except psutil.Error:
            continue
    _gone, still = psutil.wait_procs(alive, timeout=grace_seconds)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(still, timeout=grace_seconds)


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_seconds: float,
    log_dir: Path,
    name: str,
    interval: float = SAMPLE_INTERVAL_SECONDS,
) -> Measurement:
    """Run ``command`` to completion (or timeout) measuring wall time and the tree's peak RSS.

    Args:
        command: argv of the child.
        env: its full environment (default: this process's).
        cwd: its working directory.
        timeout_seconds: the child tree is killed after this long (``timed_out`` is then True).
        log_dir: stdout and stderr go to ``{log_dir}/{name}.out`` / ``.err`` (files, never pipes,
            so a chatty child cannot block).
        name: file-name stem of the logs.
        interval: sampling interval in seconds.

    Returns:
        The measurement; the caller decides what a non-zero return code means.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"{name}.out"
    stderr_path = log_dir / f"{name}.err"
    timed_out = False
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            list(command),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        sampler = _Sampler(psutil.Process(child.pid), interval)
        thread = threading.Thread(target=sampler.run, name=f"rss-{name}", daemon=True)
        thread.start()
        try:
            returncode = child.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_session(child.pid)
            returncode = child.wait()
        finally:
            wall = time.perf_counter() - start
            sampler.stop.set()
            thread.join()
            leftovers = [p for pid, p in sampler.seen.items() if pid != child.pid]
            kill_tree(leftovers)
            if child.poll() is None:
                _kill_session(child.pid)
                child.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Measurement(
        command=list(command),
        returncode=returncode,
        wall_seconds=wall,
        cpu_seconds=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        peak_rss_bytes=sampler.peak_rss,
        peak_processes=sampler.peak_processes,
        samples=sampler.samples,
        timed_out=timed_out,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
    )


def _kill_session(pid: int) -> None:
    # The child leads its own session and process group (start_new_session=True).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)

"""Thread counts that fit the machine (issue 18): the precedence of --threads, VQTOOL_THREADS and
OMP_NUM_THREADS, the cgroup quota, and one thread for the prior's raster walk."""

import os
import subprocess
import sys

import pytest
import torch

from vqtool import threads
from vqtool.errors import VqtoolError

from conftest import ROOT, run_cli


@pytest.fixture
def clean_env(monkeypatch):
    for variable in ("VQTOOL_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_precedence_option_then_vqtool_threads_then_omp_then_cores(clean_env):
    clean_env.setattr(threads, "available_cores", lambda: 7)
    assert threads.chosen_threads() == 7
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert threads.chosen_threads() == 3
    clean_env.setenv("VQTOOL_THREADS", "2")
    assert threads.chosen_threads() == 2
    assert threads.chosen_threads(5) == 5


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_counts_are_refused(clean_env, value):
    clean_env.setenv("VQTOOL_THREADS", value)
    with pytest.raises(VqtoolError, match="VQTOOL_THREADS"):
        threads.chosen_threads()


def test_cgroup_quotas_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cores(tmp_path) == 2  # 1.5 cores rounds up
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cores(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cores(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cores(tmp_path) is None
    assert threads.cgroup_cores(tmp_path / "missing") is None


def test_available_cores_follow_the_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(threads, "cgroup_cores", lambda root=None: None)
    assert threads.available_cores() == 3
    monkeypatch.setattr(threads, "cgroup_cores", lambda root=None: 1)
    assert threads.available_cores() == 1


def test_free_cores_leave_out_what_other_processes_run(monkeypatch, tmp_path):
    """Runnable tasks of other processes take cores from a walk's row pass; this process's own running
    threads do not; an unreadable count means one core."""
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    tasks = tmp_path / "task"
    for tid, state in ((101, "R"), (102, "S"), (103, "R")):
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (python (x) y) {state} 1 2 3\n")
    loadavg = tmp_path / "loadavg"
    for running, free in ((2, 4), (3, 3), (5, 1), (9, 1)):  # ours: 2 running threads
        loadavg.write_text(f"0.5 0.4 0.3 {running}/300 1234\n")
        assert threads.free_cores(loadavg, tasks) == free, running
    assert threads.free_cores(tmp_path / "missing", tasks) == 1


def test_single_thread_restores_the_pool():
    before = torch.get_num_threads()
    with threads.single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_command_line_sizes_torch_before_it_starts():
    """`vqtool --threads N` reaches torch in the command's process; a bad count is a usage error."""
    code = ("import sys; from vqtool.cli import build_app; "  # torch first imported after the option is read
            "app = build_app(); app.command('probe')(lambda: print(__import__('torch').get_num_threads())); "
            "sys.argv = ['vqtool', *sys.argv[1:], 'probe']; app()")
    # one thread against OMP_NUM_THREADS=2: torch caps a larger count at the cores it sees
    for args, env, expected in ((["--threads", "1"], {}, "1"), ([], {"VQTOOL_THREADS": "1"}, "1")):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": "2", **env}, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected
    for args, env in ((["--threads", "0"], {}), ([], {"VQTOOL_THREADS": "many"})):
        result = run_cli(*args, "models", "list", env=env)
        assert result.returncode == 2, result.stderr

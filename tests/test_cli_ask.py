"""`tempo ask`: an answer with its segment table, and one clear line (exit 2) for a bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scripts.sample_video import write_sample_video


def tempo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_ask_prints_the_answer_and_a_segment_table_and_says_the_model_is_random(tmp_path):
    video = write_sample_video(tmp_path / "clip.mp4", seconds=6, fps=10, width=96, height=64)
    out = tempo("ask", str(video), "What color is the square?", "--max-new-tokens", "4", "--budget", "20")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Answer:")
    assert "time range (s)" in out.stdout and "tokens kept" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.strip()[:1].isdigit() and " - " in line]
    assert len(rows) == 2  # 12 sampled frames -> segments of 8 and 4
    assert "RANDOM test model" in out.stderr


def test_bad_file_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    out = tempo("ask", str(bad), "What?")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("tempo ask: error:")
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: nothing to refuse")
def test_asking_for_a_gpu_that_is_not_there_is_one_line_and_exit_2(tmp_path):
    video = write_sample_video(tmp_path / "clip.mp4", seconds=2, fps=10, width=64, height=48)
    out = tempo("ask", str(video), "What?", "--device", "cuda")
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr and "Traceback" not in out.stderr

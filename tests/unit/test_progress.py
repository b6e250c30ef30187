"""CLI progress (tqdm): into a file or pipe each redraw is a line of its own; an estimated total is corrected."""

from __future__ import annotations

import io

from shared.devtools.progress import Progress, count_lines


def test_progress_into_a_pipe_writes_whole_lines_and_corrects_an_estimated_total():
    stream = io.StringIO()
    progress = Progress("importing", total=10, stream=stream, interval=0.0)
    for _ in range(4):
        progress.advance()
    elapsed = progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and lines and all(line.startswith("importing") for line in lines)
    assert "4/4" in lines[-1] and "100%" in lines[-1] and elapsed >= 0


def test_count_lines(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"id\n1\n2\n")
    assert count_lines(path) == 3

"""Progress of the long steps (sliceops/progress.py): how many lines a step shows into a pipe
and on a terminal, whatever the number of slices."""

from __future__ import annotations

import io

import pytest

from sliceops import progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def relay(tty: bool = False):
    out, clock = io.StringIO(), Clock()
    return progress.Relay(stream=out, tty=tty, clock=clock), out, clock


@pytest.mark.parametrize("total", [1, 3, 10, 200, 500, 1000])
def test_into_a_pipe_a_fast_step_shows_at_most_a_line_per_tenth_and_the_last(total):
    r, out, _ = relay()
    for i in range(1, total + 1):
        assert r.show("[@local] ", progress.text("databases", i, total, f"wa_slice_{i}"))
    lines = out.getvalue().splitlines()
    assert len(lines) <= min(total, 11)
    assert lines[-1] == f"    [@local] databases: {total}/{total} (wa_slice_{total})"
    assert lines[0] == "    [@local] databases: 1/%d (wa_slice_1)" % total


def test_into_a_pipe_a_slow_step_shows_a_line_every_10_seconds():
    r, out, clock = relay()
    for i in range(1, 100):  # 99 of 1,000 slices, one per 2 s: 198 s, no tenth reached
        clock.now += 2
        r.show("[@local] ", progress.text("containers", i, 1000, f"x-{i}"))
    lines = out.getvalue().splitlines()
    # the first line (at 2 s), then one per 10 s: at 12, 22, ... 192 s
    assert len(lines) == 1 + 19
    assert lines[1] == "    [@local] slice containers: 6/1000 (x-6)"


def test_on_a_terminal_lines_clear_pyinfras_spinner_and_come_every_2_seconds():
    r, out, clock = relay(tty=True)
    for i in range(1, 501):  # 500 slices, 0.1 s each: 50 s
        clock.now += 0.1
        r.show("[@local] ", progress.text("roles", i, 500, f"wa_slice_{i}"))
    lines = out.getvalue().split("\n")[:-1]  # (splitlines would split at the \r too)
    assert all(line.startswith("\r\x1b[K    [@local] roles and credentials: ") for line in lines)
    assert lines[-1].endswith(": 500/500 (wa_slice_500)")
    assert 25 <= len(lines) <= 36  # one per 2 s (25) plus the tenths, bounded


def test_other_lines_are_left_alone_and_colour_is_stripped_from_the_prefix():
    r, out, _ = relay()
    assert not r.show("[@local] ", "applied 0002_x to wa_slice_3")
    assert not r.show("[@local] ", "sliceops-progress databases two 3 x")
    assert r.show("\x1b[1m[@local]\x1b[0m ", progress.text("migrations", 1, 2, "wank_saas"))
    assert out.getvalue() == "    [@local] migrations: 1/2 (wank_saas)\n"


def test_the_reader_hook_shows_progress_and_keeps_only_the_other_lines(monkeypatch):
    """pyinfra's reader, wrapped: fed a command's output, progress lines are shown, not kept."""
    from queue import Queue

    from pyinfra.connectors import util

    monkeypatch.setattr(util, "read_buffer", util.read_buffer)
    out, clock = io.StringIO(), Clock()
    progress.install()
    monkeypatch.setattr(progress, "_relay", progress.Relay(stream=out, tty=False, clock=clock))
    queue = Queue()
    lines = [b"created wa_slice_1\n", progress.text("databases", 1, 2, "wa_slice_1").encode() + b"\n",
             progress.text("databases", 2, 2, "wa_slice_2").encode() + b"\n", b"done\n"]
    util.read_buffer("stdout", iter(lines), queue, print_func=lambda line: f"[@local] {line}")
    assert [o.line for o in queue.queue] == ["created wa_slice_1", "done"]
    assert out.getvalue().splitlines() == ["    [@local] databases: 1/2 (wa_slice_1)",
                                           "    [@local] databases: 2/2 (wa_slice_2)"]

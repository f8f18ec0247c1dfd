"""Progress lines where stderr is not a terminal, and ``harness --version``."""

from __future__ import annotations

import io

import pytest

import harness
from harness.cli import main
from harness.run.progress import LineProgress


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_every_30_seconds_and_at_the_end() -> None:
    out, clock = io.StringIO(), _Clock()
    p = LineProgress("lens", "val", total=100, initial=10, stream=out, clock=clock)
    for _ in range(20):  # 20 samples in 20 s: nothing yet
        clock.t += 1.0
        p.update()
    assert out.getvalue() == ""
    for _ in range(10):  # 30 samples in 30 s: one line, 1 sample/s, 60 left
        clock.t += 1.0
        p.update()
    assert out.getvalue() == "lens val: 40/100 samples, 1.00 samples/s, ETA 1m00s\n"
    clock.t += 15.0
    p.update(5)
    p.close()
    assert out.getvalue().splitlines()[-1] == "lens val: 45/100 samples, 0.78 samples/s, ETA 1m11s"  # 35 in 45 s; 55 left: 70.7 s


def test_nothing_on_a_terminal() -> None:
    out, clock = _Tty(), _Clock()
    p = LineProgress("lens", "val", total=3, initial=0, stream=out, clock=clock)
    clock.t = 100.0
    p.update(3)
    p.close()
    assert out.getvalue() == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"harness {harness.__version__}\n"

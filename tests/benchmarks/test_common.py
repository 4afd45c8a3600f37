"""The helpers every benchmark shares (benchmarks/common.py): the tagged log, timing, the machine description.
No timings are checked, only what the helpers return."""
from __future__ import annotations

import os
import re

from benchmarks import common


def test_logger_writes_tagged_lines_to_stderr_only(capsys):
    log = common.logger("growth")
    log("corpus 30 docs")
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(r"\[growth \d\d:\d\d:\d\d\] corpus 30 docs\n", err)


def test_timed_returns_the_result_and_non_negative_seconds():
    calls: list[int] = []
    seconds, value = common.timed(lambda: calls.append(1) or "done")
    assert value == "done" and calls == [1] and seconds >= 0
    wall, cpu, value = common.timed_cpu(lambda: sum(range(1000)))
    assert value == 499500 and wall >= 0 and cpu >= 0


def test_machine_info_describes_the_machine_and_its_load():
    info = common.machine_info()
    assert list(info) == ["cpu", "cores", "memory_gib", "platform", "python", "versions", "load_average_start"]
    assert info["cores"] == os.cpu_count() and len(info["load_average_start"]) == 3
    assert set(info["versions"]) == set(common.PACKAGES) and info["versions"]["apache-beam"]
    assert "load_average_start" not in common.describe_machine()
    assert all(x == round(x, 2) for x in common.load_average(2))


"""Atomic outputs: all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.core.io import StagedOutputs, atomic_path, read_json, write_json


def test_outputs_appear_only_when_all_succeed(tmp_path: Path) -> None:
    report, folder = tmp_path / "r" / "report.json", tmp_path / "out"
    with StagedOutputs() as out:
        write_json(out.file(report), {"a": 1})
        (out.dir(folder) / "x.txt").write_text("x")
        assert not report.exists() and not folder.exists()
    assert read_json(report) == {"a": 1}
    assert (folder / "x.txt").read_text() == "x"
    assert oct(report.stat().st_mode & 0o777) == "0o644"
    assert oct(folder.stat().st_mode & 0o777) == "0o755"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "r", "report.json", "x.txt"]


def test_failure_removes_temporaries_and_stale_outputs(tmp_path: Path) -> None:
    report, folder = tmp_path / "report.json", tmp_path / "out"
    report.write_text("old")
    folder.mkdir()
    with pytest.raises(RuntimeError, match="boom"), StagedOutputs() as out:
        write_json(out.file(report), {"a": 1})
        (out.dir(folder) / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"

"""File I/O at the edges: atomic writes so a failed stage never leaves partial outputs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


def _tmp_sibling(path: Path, is_dir: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class StagedOutputs:
    """Stage outputs in temporary siblings and move them into place only when all succeed.

    Usage::

        with StagedOutputs() as out:
            write_json(out.file("reports/x.json"), {...})
            model.save_pretrained(out.dir("models/model"))

    On an exception every temporary path is removed, and so is any earlier copy of the
    outputs (DVC deletes a stage's outputs before it runs it, so nothing stale survives);
    with ``keep_on_error`` an earlier copy stays as it was instead.
    """

    def __init__(self, keep_on_error: bool = False) -> None:
        self._staged: dict[Path, Path] = {}
        self.keep_on_error = keep_on_error

    def file(self, path: str | Path) -> Path:
        return self._stage(Path(path), is_dir=False)

    def dir(self, path: str | Path) -> Path:
        return self._stage(Path(path), is_dir=True)

    def _stage(self, final: Path, is_dir: bool) -> Path:
        if final in self._staged:
            return self._staged[final]
        tmp = _tmp_sibling(final, is_dir)
        self._staged[final] = tmp
        return tmp

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            for final, tmp in self._staged.items():
                _remove(tmp)
                if not self.keep_on_error:
                    _remove(final)
            return
        for final, tmp in self._staged.items():
            tmp.chmod(0o755 if tmp.is_dir() else 0o644)  # mkstemp/mkdtemp make them private
            _remove(final)
            tmp.replace(final)
            log.debug("wrote %s", final)


@contextmanager
def atomic_path(path: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Write ``path`` through a temporary sibling renamed into place on success; on an error
    the file as it was before stays (see StagedOutputs)."""
    with StagedOutputs(keep_on_error=True) as out:
        yield out.dir(path) if is_dir else out.file(path)


def file_md5(path: str | Path) -> str:
    """MD5 of a file, read in 1 MiB chunks (the digest DVC records for files)."""
    digest = hashlib.md5()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    df.to_parquet(path, index=False)


def read_parquet(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)

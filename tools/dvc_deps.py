"""dvc.yaml's code deps, generated from the imports: ``make deps``.

Each stage depends on its entry point and on the files of every ``finetune`` module it imports,
directly or through other modules, at module level or inside functions (a function's import
still runs when the stage calls it), parent packages' ``__init__.py`` included. So an edit
reruns exactly the stages whose code can see it.

The generated lists sit between two marker comments in each stage's ``deps``; everything else in
dvc.yaml (data deps such as ``${data.watch}``, params, outputs, comments) is left as it is:

    deps:
      # >>> code deps: written by `make deps` from the imports, do not edit
      - stages/train.py
      - src/finetune/__init__.py
      ...
      # <<< code deps
      - ${paths.processed_dir}

``python tools/dvc_deps.py`` rewrites dvc.yaml; ``--check`` only says whether it would change
(exit status 1 if so). tests/test_dvc_deps.py fails when dvc.yaml differs from what this writes.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import logging
import re
import sys
from pathlib import Path

import yaml

log = logging.getLogger("dvc_deps")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "finetune"
BEGIN = "# >>> code deps: written by `make deps` from the imports, do not edit"
END = "# <<< code deps"
STAGE_LINE = re.compile(r"^  ([A-Za-z_][\w-]*):\s*(#.*)?$")  # a stage's key under `stages:`
MAKE_TARGET = "make deps"


class DepsError(Exception):
    """dvc.yaml cannot be rewritten: a stage without markers, or a cmd without an entry point."""


def module_file(module: str, root: Path = REPO) -> Path | None:
    """The file of a ``finetune...`` module (a package's ``__init__.py``), or None."""
    base = root.joinpath("src", *module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """Every ``finetune`` module ``path`` imports, at module level or inside functions; for
    ``from finetune.x import y`` that is ``finetune.x.y`` when y is a module, else finetune.x."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                continue
            found.add(node.module)
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if module_file(submodule, root) is not None:
                    found.add(submodule)
    return found


def import_closure(entry: Path, root: Path = REPO) -> set[Path]:
    """The files of every finetune module reachable from ``entry`` (parent packages too);
    ``entry`` itself only when an import leads back to it."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        for module in imported_modules(path, root):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/ and a/b/ too
                file = module_file(".".join(parts[:depth]), root)
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return seen


def entry_point(cmd: str, root: Path = REPO) -> Path:
    """The file a stage's ``cmd`` runs: ``python stages/x.py ...`` or ``python -m finetune.x``."""
    words = cmd.split()
    if words[:2] == ["python", "-m"] and len(words) > 2:
        file = module_file(words[2], root)
        if file is None:
            raise DepsError(f"cmd {cmd!r}: no module {words[2]} under src/")
        return file
    if len(words) > 1 and words[0] == "python" and words[1].endswith(".py"):
        return root / words[1]
    raise DepsError(f"cmd {cmd!r}: expected `python <script>.py ...` or `python -m <module>`")


def code_deps(cmd: str, root: Path = REPO) -> list[str]:
    """The entry point of ``cmd``, then the files of its import closure, sorted, as paths
    relative to ``root``: what the stage's code deps are."""
    entry = entry_point(cmd, root)
    closure = import_closure(entry, root) - {entry}
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return [rel(entry), *sorted(rel(p) for p in closure)]


def render(text: str, root: Path = REPO) -> str:
    """dvc.yaml ``text`` with each stage's marked block replaced by its :func:`code_deps`."""
    stages = (yaml.safe_load(text) or {}).get("stages") or {}
    out: list[str] = []
    stage: str | None = None
    in_stages = False
    done: set[str] = set()
    lines = iter(text.splitlines(keepends=True))
    for line in lines:
        if re.match(r"^\S", line) and not line.startswith("#"):
            in_stages = line.rstrip() == "stages:"
            stage = None
        elif in_stages and (match := STAGE_LINE.match(line)):
            stage = match.group(1)
        out.append(line)
        if line.strip() != BEGIN:
            continue
        if stage is None or stage not in stages:
            raise DepsError(f"dvc.yaml: a `{BEGIN}` line outside a stage")
        if stage in done:
            raise DepsError(f"dvc.yaml stage {stage}: two `{BEGIN}` lines")
        indent = line[: len(line) - len(line.lstrip())]
        for dep in code_deps(stages[stage]["cmd"], root):
            out.append(f"{indent}- {dep}\n")
        for skipped in lines:
            if skipped.strip() == END:
                out.append(skipped)
                break
        else:
            raise DepsError(f"dvc.yaml stage {stage}: `{BEGIN}` without `{END}` after it")
        done.add(stage)
    missing = sorted(set(stages) - done)
    if missing:
        raise DepsError(
            f"dvc.yaml stages {', '.join(missing)}: no code deps block; put the two lines "
            f"`{BEGIN}` and `{END}` in their deps"
        )
    return "".join(out)


def diff(old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), "dvc.yaml", "generated"
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("--file", type=Path, default=REPO / "dvc.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    old = args.file.read_text()
    try:
        new = render(old, args.file.resolve().parent)
    except DepsError as exc:
        log.error("%s", exc)
        return 2
    if new == old:
        log.info("%s: code deps are up to date", args.file)
        return 0
    if args.check:
        log.error(
            "%s: code deps differ from the imports; run `%s`\n%s",
            args.file,
            MAKE_TARGET,
            diff(old, new),
        )
        return 1
    args.file.write_text(new)
    log.info("%s: code deps rewritten from the imports", args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

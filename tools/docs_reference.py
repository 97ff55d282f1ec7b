"""The documentation site's reference pages, generated when MkDocs builds (``make docs``).

- ``reference/config.md``: every key of the config, section by section, from the typed schema
  (``finetune.core.schema.PipelineConfig``: its JSON schema gives each key's type, choices and
  range), with the default value ``conf/`` composes to and the comments written beside the key in
  ``conf/``; each section's config group lists its options (the files in ``conf/<group>/``).
- ``reference/cli.md``: every ``finetune`` command with its ``--help``, from the argument parser
  (``finetune.cli.build_parser``).

Both are made from the code at build time and never committed, so they cannot drift from it;
tests/test_docs.py checks that they cover every key, option, command and flag. This file is an
MkDocs hook (``hooks:`` in mkdocs.yml): :func:`on_files` adds the pages to the build.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
CONFIG_PAGE = "reference/config.md"
CLI_PAGE = "reference/cli.md"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


# --------------------------------------------------------------------------- conf/ comments


def _split_comment(rest: str) -> tuple[str, int | None]:
    """A key line's value and the column of its inline comment (None: none), quotes respected."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] == " "):
            return rest[:i], i
    return rest, None


def file_comments(path: Path) -> tuple[str, dict[str, str]]:
    """A conf/ YAML file's header (its leading comment block) and, by dotted key, the comments
    written for each key: the comment lines just above it and its inline comment, with the
    lines that continue an inline comment at the same column."""
    lines = path.read_text().splitlines()
    header: list[str] = []
    start = 0
    while start < len(lines) and lines[start].lstrip().startswith("#"):
        text = lines[start].strip().lstrip("#").strip()
        if not text.startswith("@package"):
            header.append(text)
        start += 1
    above: list[str] = []
    if start < len(lines) and lines[start].strip():  # the header runs into the first key:
        end = next((i + 1 for i, t in enumerate(header) if t.endswith(".")), len(header))
        header, above = header[:end], header[end:]  # its first sentences are the file's
    found: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []
    inline_col: int | None = None  # column of the last key line's inline comment
    last: str | None = None
    for line in lines[start:]:
        stripped = line.strip()
        if not stripped:
            above, inline_col = [], None
            continue
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if last and inline_col is not None and line.index("#") == inline_col:
                found[last].append(text)
            else:
                above.append(text)
                inline_col = None
            continue
        match = _KEY.match(line)
        if not match:  # a list item or a value's continuation
            above, inline_col = [], None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([*(k for _, k in stack), match["key"]])
        stack.append((indent, match["key"]))
        _, col = _split_comment(match["rest"])
        inline = match["rest"][col:].lstrip("#").strip() if col is not None else ""
        found[key] = [*above, *([inline] if inline else [])]
        inline_col = None if col is None else indent + len(match["key"]) + 1 + col
        above, last = [], key
    return " ".join(header), {k: " ".join(v) for k, v in found.items() if v}


def _group_files(group: str, option: str) -> list[Path]:
    """An option's file and the files it extends (``defaults: [base, _self_]``), own file first."""
    path = CONF / group / f"{option}.yaml"
    files = [path]
    data = yaml.safe_load(path.read_text()) or {}
    for entry in data.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            files += _group_files(group, entry)
    return files


def _defaults() -> dict[str, str]:
    """conf/config.yaml's default option of each group."""
    out = {}
    for entry in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            for group, option in entry.items():
                out[group.removeprefix("optional ")] = option
    return out


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match[1] if match else text


# --------------------------------------------------------------------------- types


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON-schema property as a short type: ``int >= 1``, ``auto | head | tail``..."""
    if "$ref" in prop:
        return defs[prop["$ref"].rsplit("/", 1)[-1]].get("title", "section")
    if "anyOf" in prop:
        kinds = list(dict.fromkeys(_type(p, defs) for p in prop["anyOf"]))
        if kinds[:2] == ["int", "number"]:  # Number: an int or a float as written
            kinds = kinds[1:]
        return " ".join([" | ".join(kinds), _bounds(prop)]).strip()
    if "enum" in prop:
        return " | ".join(json.dumps(v) if not isinstance(v, str) else v for v in prop["enum"])
    if "const" in prop:
        return str(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        inner = _type(prop.get("items", {}), defs)
        return f"list of ({inner})" if " | " in inner else f"list of {inner}"
    if kind == "object":
        values = prop.get("additionalProperties")
        return f"map to {_type(values, defs)}" if isinstance(values, dict) else "map"
    names = {
        "integer": "int",
        "number": "number",
        "string": "str",
        "boolean": "bool",
        "null": "null",
    }
    return " ".join([names.get(kind, kind), _bounds(prop)]).strip()


def _bounds(prop: dict[str, Any]) -> str:
    """A JSON-schema property's range, length and pattern (pydantic writes gt/ge/lt/le on a
    union)."""
    signs = (
        ("exclusiveMinimum", ">"),
        ("gt", ">"),
        ("minimum", ">="),
        ("ge", ">="),
        ("exclusiveMaximum", "<"),
        ("lt", "<"),
        ("maximum", "<="),
        ("le", "<="),
    )
    bounds = [f"{sign} {prop[key]}" for key, sign in signs if key in prop]
    if prop.get("minLength") == prop.get("maxLength") == 1:
        bounds.append("(one character)")
    else:
        bounds += [f"length >= {prop['minLength']}"] if "minLength" in prop else []
        bounds += [f"length <= {prop['maxLength']}"] if "maxLength" in prop else []
    if "pattern" in prop:
        bounds.append(f"matching `{prop['pattern']}`")
    return ", ".join(bounds)


def config_keys() -> Iterator[tuple[str, str]]:
    """Every leaf key of the config (dotted) with its type, in the schema's order."""
    from finetune.core.schema import PipelineConfig

    schema = PipelineConfig.model_json_schema()
    defs = schema.get("$defs", {})

    def walk(props: dict[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
        for name, prop in props.items():
            ref = prop.get("$ref")
            if ref:
                yield from walk(defs[ref.rsplit("/", 1)[-1]]["properties"], f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", _type(prop, defs)

    yield from walk(schema["properties"], "")


def _value(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config[part]
    return config


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_reference() -> str:
    """The configuration reference page (Markdown)."""
    from finetune.core.config import compose

    composed = compose(CONF)
    defaults = _defaults()
    keys = list(config_keys())
    sections = list(dict.fromkeys(k.split(".")[0] for k, _ in keys))
    root_header, root_comments = file_comments(CONF / "config.yaml")
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config schema (`finetune.core.schema`) and `conf/` when this site was "
        "built. Every key below is in `params.yaml`; set one for a run with `dvc exp run -S "
        'key=value` or `make params O="key=value"`, or pick another option of a group with '
        "`-S group=option` (`model=distilbert`). Unknown keys and wrong types are errors that "
        "name the key and the `conf/` file. Defaults are those of `conf/config.yaml`'s defaults "
        "(" + ", ".join(f"`{g}: {o}`" for g, o in defaults.items() if o) + ").",
        "",
    ]
    for section in sections:
        lines += [f"## `{section}`", ""]
        comments: dict[str, str] = {}
        if (CONF / section).is_dir():
            default = defaults.get(section)
            options = sorted(p.stem for p in (CONF / section).glob("*.yaml"))
            lines += ["| option | what it is |", "|---|---|"]
            for option in options:
                header, _ = file_comments(CONF / section / f"{option}.yaml")
                mark = " (default)" if option == default else ""
                lines.append(f"| `{section}={option}`{mark} | {_cell(_first_sentence(header))} |")
            lines.append("")
            for path in reversed(_group_files(section, default)):
                header, found = file_comments(path)
                comments.update({f"{section}.{k}": v for k, v in found.items()})
                if path.stem == default and header:
                    lines += [header, ""]
        else:
            comments = root_comments
        lines += ["| key | type | default | what it does |", "|---|---|---|---|"]
        for key, kind in keys:
            if key.split(".")[0] != section:
                continue
            value = json.dumps(_value(composed, key), ensure_ascii=False)
            lines.append(
                f"| `{key}` | {_cell(kind)} | `{_cell(value)}` | {_cell(comments.get(key, ''))} |"
            )
        lines.append("")
    experiments = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
    lines += [
        "## Experiment presets",
        "",
        "`conf/experiment/` files override keys of several sections at once: "
        '`dvc exp run -S +experiment=NAME` or `make params O="experiment=NAME"`.',
        "",
        "| preset | what it is |",
        "|---|---|",
    ]
    for name in experiments:
        header, _ = file_comments(CONF / "experiment" / f"{name}.yaml")
        lines.append(f"| `experiment={name}` | {_cell(header)} |")
    if root_header:
        lines += ["", f"`conf/config.yaml`: {root_header}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_commands() -> dict[str, argparse.ArgumentParser]:
    """``finetune``'s commands and their parsers."""
    from finetune.cli import build_parser

    return _subcommands(build_parser())


def cli_reference() -> str:
    """The command-line reference page (Markdown)."""
    from finetune.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps --help to the terminal: the same on every build
    parser = build_parser()
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
    lines = [
        "# Command-line reference",
        "",
        "Generated from `finetune`'s argument parser (`finetune.cli.build_parser`) when this site "
        "was built: what `finetune COMMAND --help` prints. The pipeline's stages run with `dvc "
        "repro` (or `python stages/NAME.py` with Hydra overrides).",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    commands = _subcommands(parser)
    lines += [
        f"| [`finetune {name}`](#finetune-{name}) | {_cell(helps.get(name) or '')} |"
        for name in commands
    ]
    lines += ["", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in commands.items():
        lines += [f"## finetune {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- MkDocs hook


def on_files(files: Any, config: Any) -> Any:
    """Add the generated reference pages to the site (MkDocs 1.6 ``File.generated``)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, CONFIG_PAGE, content=config_reference()))
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    return files

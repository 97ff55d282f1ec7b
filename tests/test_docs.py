"""The documentation site: its generated reference pages cover every config key, conf/ option,
command and flag (tools/docs_reference.py); the site builds strictly, and a broken link fails
the build; README's links point at pages that exist."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune.cli import build_parser
from finetune.core.config import compose
from finetune.core.schema import PipelineConfig, Section

REPO = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "docs_reference", REPO / "tools" / "docs_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_reference = load_tool()


def schema_leaves(model: type = PipelineConfig, prefix: str = "") -> list[str]:
    """Every leaf key of the schema, walked through pydantic's own field types."""
    keys = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            keys += schema_leaves(kind, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


@pytest.fixture(scope="module")
def config_page() -> str:
    return docs_reference.config_reference()


def table_rows(page: str) -> dict[str, list[str]]:
    """The config page's key rows: key -> [type, default, what it does]."""
    rows = {}
    for line in page.splitlines():
        match = re.match(r"\| `([\w.]+)` \| (.*) \|$", line)
        if match and "=" not in match[1]:
            rows[match[1]] = re.split(r" (?<!\\)\| ", match[2])
    return rows


def test_config_reference_has_every_schema_key_with_its_composed_default(config_page) -> None:
    rows = table_rows(config_page)
    leaves = schema_leaves()
    assert leaves and set(rows) == set(leaves)
    composed = compose(REPO / "conf")
    for key in leaves:
        value = composed
        for part in key.split("."):
            value = value[part]
        shown = rows[key][1].strip("`").replace("\\|", "|")
        assert json.loads(shown) == value, key


def test_config_reference_gives_types_choices_ranges_and_the_conf_comments(config_page) -> None:
    rows = table_rows(config_page)
    assert rows["model.long_text"][0] == "auto \\| head \\| tail \\| head_tail \\| chunks"
    assert rows["data.split.validation"][0] == "number > 0, < 1"
    assert rows["model.max_length"][0] == "int >= 2 \\| auto"
    assert rows["data.delimiter"][0] == "str (one character) \\| null"
    # the comment beside the key in conf/train/default.yaml, its continuation lines joined
    assert rows["train.max_epochs"][2] == "epochs: auto never trains longer than this"
    assert "LP-FT" in rows["train.head_init"][2] and "saturates" in rows["train.head_init"][2]
    # a comment above the key, from the file the default option extends (conf/data/base.yaml)
    assert rows["data.path"][2].startswith("A file, a directory")
    # nested keys and keys of conf/config.yaml itself
    assert rows["train.lora.r"][1] == "`8`"
    assert "save_pretrained" in rows["paths.model_dir"][2]


def test_config_reference_lists_every_option_of_every_group(config_page) -> None:
    conf = REPO / "conf"
    for group in sorted(p for p in conf.iterdir() if p.is_dir()):
        for option in sorted(group.glob("*.yaml")):
            assert f"`{group.name}={option.stem}`" in config_page, (group.name, option.stem)
    defaults = yaml.safe_load((conf / "config.yaml").read_text())["defaults"]
    assert f"`model={next(d['model'] for d in defaults if 'model' in d)}` (default)" in config_page


def test_conf_comments_header_above_inline_continuation_and_nesting(tmp_path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(
        "# @package _global_\n"
        "# What this file is. More of it\n"
        "# Explains first.\n"
        "first: 1\n"
        "plain: 2\n"
        "\n"
        "# Above second.\n"
        'second: "a # not a comment"   # inline\n'
        "                              # continued\n"
        "outer:                # the section\n"
        "  # above inner\n"
        "  inner: x            # inner inline\n"
        "  listed:\n"
        "    - item            # an item's comment is no key's\n"
        "after: 3\n"
    )
    header, found = docs_reference.file_comments(path)
    assert header == "What this file is. More of it Explains first."
    assert found == {
        "second": "Above second. inline continued",
        "outer": "the section",
        "outer.inner": "above inner inner inline",
    }


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_cli_reference_has_every_command_and_every_flag() -> None:
    page = docs_reference.cli_reference()
    commands = subcommands()
    assert len(commands) >= 10
    for name, parser in commands.items():
        section = page.split(f"## finetune {name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"[`finetune {name}`](#finetune-{name})" in page
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in section, (name, flag)
            if not action.option_strings:  # a positional: its name or its choices
                shown = action.metavar or (
                    "{" + ",".join(action.choices) + "}" if action.choices else action.dest
                )
                assert shown in section, (name, action.dest)


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )


def test_the_site_builds_strictly_with_the_generated_reference(tmp_path) -> None:
    done = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    html = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    assert "train.time_budget" in html
    assert (
        "finetune init-data" in (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    )


def test_a_broken_anchor_fails_the_strict_build(tmp_path) -> None:
    for name in ("docs", "conf", "tools"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "data.md"
    page.write_text(page.read_text() + "\nSee [training](training.md#no-such-heading).\n")
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 1
    assert "does not contain an anchor '#no-such-heading'" in done.stderr


def test_readme_links_point_at_pages_and_headings_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#([^)]+))?\)", readme)
    assert links
    for target, anchor in links:
        path = REPO / target
        assert path.is_file(), target
        if anchor:
            slugs = {
                re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", h.replace("`", "").strip().lower()))
                for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
            }
            assert anchor in slugs, (target, anchor)


def load_screenshots():
    spec = importlib.util.spec_from_file_location("screenshots", REPO / "tools" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshots_say_to_run_the_demo_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`make screenshots` before `make run`: a clear message for each missing input, no file."""
    tool = load_screenshots()
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool, "REPORT", tmp_path / "reports" / "error_analysis" / "report.html")
    monkeypatch.setattr(tool, "STORE", tmp_path / ".mlflow" / "mlflow.db")
    with pytest.raises(SystemExit, match=r"report\.html is missing: run `make run` first"):
        tool.report_shot("chromium", tmp_path / "img", tmp_path)
    missing = pytest.raises(SystemExit, match=r"mlflow\.db is missing: run `make run` first")
    with missing, tool.mlflow_ui(tmp_path):
        pass
    assert not (tmp_path / "img").exists()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium (.ci/run)")
def test_screenshot_of_a_report_is_an_image_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The report's screenshot in real headless Chromium: a PNG of the window's size, not blank."""
    from PIL import Image

    tool = load_screenshots()
    report = tmp_path / "report.html"
    report.write_text("<html><body><h1>Error analysis</h1>" + "<p>text</p>" * 50 + "</body></html>")
    monkeypatch.setattr(tool, "REPORT", report)
    tool.report_shot(tool.chromium(), tmp_path / "img", tmp_path)
    image = Image.open(tmp_path / "img" / "error-report.png").convert("L")
    assert image.size == (1280, 1800)
    histogram = image.histogram()
    assert sum(histogram[:100]) > 0, "dark pixels: the screenshot shows the page's text"

"""The error-analysis report in a real browser: headless Chromium renders every section offline."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from finetune.analysis.render import SECTIONS
from tests.helpers import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [
    pytest.mark.slow,  # starts a browser
    pytest.mark.skipif(
        not CHROMIUM or not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed (.ci/run installs it)",
    ),
]

# Appended to a copy of the report: the browser itself says what rendered.
CHECK = """<script>
const sections = {};
for (const id of %s) {
  const el = document.getElementById(id);
  sections[id] = el ? {height: el.offsetHeight, text: el.innerText.length} : null;
}
const images = [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0,
  width: i.naturalWidth, alt: i.alt}));
const pre = document.createElement("pre");
pre.id = "render-check";
pre.textContent = JSON.stringify({sections, images});
document.body.appendChild(pre);
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    flags = [*CHROMIUM_FLAGS, "--hide-scrollbars", f"--user-data-dir={profile}"]
    return subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


def run_probe(report: Path, script: str, workdir: Path) -> Any:
    """``script`` appended to a copy of ``report`` and run in Chromium: the JSON it writes into
    ``<pre id="render-check">``."""
    probe = workdir / "probe.html"
    probe.write_text(report.read_text().replace("</body>", script + "</body>"))
    dom = chromium(
        "--dump-dom", "--virtual-time-budget=10000", probe.as_uri(), profile=workdir / "p1"
    ).stdout
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.S)
    assert found, "the check script did not run"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def assert_report_renders(report: Path, workdir: Path) -> Path:
    """Every section present, non-empty and laid out; every image decoded; a non-blank
    screenshot. Returns the screenshot's path."""
    from PIL import Image

    ids = [sid for sid, _ in SECTIONS]
    result = run_probe(report, CHECK % json.dumps(ids), workdir)
    for sid in ids:
        section = result["sections"][sid]
        assert section is not None, f"section #{sid} missing"
        assert section["height"] > 40 and section["text"] > 20, f"section #{sid} is empty"
    assert result["images"], "no images in the report"
    for img in result["images"]:
        assert img["ok"] and img["width"] > 50, f"image {img['alt']!r} did not decode"
    shot = workdir / "report.png"
    chromium(
        f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri(), profile=workdir / "p2"
    )
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2400)
    histogram = image.histogram()
    non_white = 1 - histogram[255] / sum(histogram)
    dark = sum(histogram[:100]) / sum(histogram)
    assert non_white > 0.2 and dark > 0.005, "the screenshot looks blank"
    return shot


def test_report_renders_in_headless_chromium(pipeline_cfg: dict[str, Any], tmp_path: Path) -> None:
    report = Path(pipeline_cfg["paths"]["error_report_html"])
    assert_report_renders(report, tmp_path)


EXPLANATIONS = """<script>
const rows = [...document.querySelectorAll("#explanations .expl")].map(grid => {
  const names = [...grid.querySelectorAll(".method")];
  return names.map(n => ({name: n.innerText, sameLine: Math.abs(n.getBoundingClientRect().top
    - n.nextElementSibling.getBoundingClientRect().top) < 12,
    words: n.nextElementSibling.querySelectorAll("span").length,
    coloured: [...n.nextElementSibling.querySelectorAll("span")].filter(
      s => getComputedStyle(s).backgroundColor !== "rgba(0, 0, 0, 0)").length}));
});
const tables = document.querySelectorAll("#explanations table").length;
const pre = document.createElement("pre");
pre.id = "render-check";
pre.textContent = JSON.stringify({rows, tables});
document.body.appendChild(pre);
</script>"""


def test_the_explainers_render_side_by_side(pipeline_cfg: dict[str, Any], tmp_path: Path) -> None:
    """Each explained text: one line per explainer, its name beside its highlighted words; the
    faithfulness and agreement tables; a screenshot of the section."""
    from PIL import Image

    report = Path(pipeline_cfg["paths"]["error_report_html"])
    result = run_probe(report, EXPLANATIONS, tmp_path)
    assert result["tables"] == 2, "faithfulness and agreement"
    assert result["rows"], "no explained texts"
    for methods in result["rows"]:
        assert [m["name"] for m in methods] == ["Integrated gradients", "SHAP", "LIME"]
        assert all(m["sameLine"] and m["words"] > 0 for m in methods), methods
        assert any(m["coloured"] for m in methods), "words highlighted by weight"
    shot = tmp_path / "explanations.png"
    chromium(
        f"--screenshot={shot}", "--window-size=1280,1600", f"{report.as_uri()}#explanations",
        profile=tmp_path / "p2",
    )  # fmt: skip
    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    assert 1 - histogram[255] / sum(histogram) > 0.1, "the screenshot looks blank"

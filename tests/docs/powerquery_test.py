"""The Power BI connector (docs/powerbi/AlxCourseProgress.pq) parses with Microsoft's Power Query
parser (@microsoft/powerquery-parser, run by tests/powerquery/parse.mjs under Node.js).

With CI=true a missing `node` or parser package fails the test; elsewhere the test is skipped,
saying why (bin/run-tests installs both)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARSE = ROOT / "tests" / "powerquery" / "parse.mjs"
PARSER_PACKAGE = ROOT / "tests" / "powerquery" / "node_modules" / "@microsoft" / "powerquery-parser"
CONNECTOR = ROOT / "docs" / "powerbi" / "AlxCourseProgress.pq"
ODATA_QUERY = ROOT / "docs" / "powerbi" / "CourseProgressOData.pq"


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the Power Query parser cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def parse(*paths: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed (bin/run-tests installs Debian's nodejs)")
    if not PARSER_PACKAGE.is_dir():
        _unavailable("@microsoft/powerquery-parser is not installed: npm ci --prefix tests/powerquery")
    return subprocess.run([node, str(PARSE), *map(str, paths)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_connector_parses():
    result = parse(CONNECTOR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"ok {CONNECTOR}"]


def test_odata_query_parses():
    """The guide's OData query (incremental refresh); its filter is the one the feed's partition
    test sends (tests/local_alx_report_api/odata/client_test.py)."""
    result = parse(ODATA_QUERY)
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(ODATA_QUERY.read_text().split())
    assert "each [created] >= DateTimeZone.From(RangeStart) and [created] < DateTimeZone.From(RangeEnd)" in text
    assert 'ApiKeyName = "wstoken"' in text and 'local/alx_report_api/odata/' in text


@pytest.mark.parametrize("breakage", ["let without in", "unbalanced bracket"])
def test_broken_m_is_reported(tmp_path, breakage):
    text = CONNECTOR.read_text(encoding="utf-8")
    if breakage == "let without in":
        # the last line is the outer let's result, "    AlxCourseProgress"; drop its "in" too
        head, _, _ = text.rstrip().rpartition("\nin\n")
        broken = head + "\n"
    else:
        broken = text.replace("Headers = headers,", "Headers = [Accept = \"application/json\",", 1)
    assert broken != text
    path = tmp_path / "broken.pq"
    path.write_text(broken, encoding="utf-8")
    result = parse(path, CONNECTOR)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"error {path}: parse error: "), lines
    assert "line " in lines[0] and "column " in lines[0], lines
    assert lines[1] == f"ok {CONNECTOR}", "one broken file does not hide the others' results"

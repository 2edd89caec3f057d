"""The docs name what exists: docs/testing.md has a row for every test file."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_testing_page_names_every_test_file():
    page = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_\w+\.py)`", page))
    files = {path.name for path in (ROOT / "tests").glob("test_*.py")}
    assert not files - named, f"docs/testing.md does not name {sorted(files - named)}: add a row saying what each checks"
    assert not named - files, f"docs/testing.md names test files that do not exist: {sorted(named - files)}"

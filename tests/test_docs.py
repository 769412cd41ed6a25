"""The error catalogue (docs/errors.md) cites tests that exist.

A renamed or deleted test shows here.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_error_catalogue_cites_exists():
    cited = set(re.findall(r"\b(test_\w+)::(test_\w+)", (ROOT / "docs" / "errors.md").read_text()))
    assert len(cited) >= 30
    missing = [
        f"{module}::{name}"
        for module, name in sorted(cited)
        if not re.search(rf"^def {name}\(", (ROOT / "tests" / f"{module}.py").read_text(), re.M)
    ]
    assert missing == []

"""The installed distribution is `ultralytics` (a patched fork), and its version says which API level it follows."""

from __future__ import annotations

import importlib.metadata as metadata
import re
from pathlib import Path

import ultralytics

REPO = Path(__file__).resolve().parents[1]


def test_distribution_is_ultralytics_with_our_version():
    dist = metadata.distribution("ultralytics")
    assert dist.metadata["Name"] == "ultralytics"
    assert metadata.version("ultralytics") == ultralytics.__version__
    # the installed distribution is this checkout, not a published `ultralytics` shadowing it
    assert Path(ultralytics.__file__).resolve().is_relative_to(REPO) or "+biformer." in dist.version


def test_version_scheme():
    """<published API level>+biformer.<n> (PEP 440 local label): `ultralytics>=8.0` requirements accept it."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)\+biformer\.(\d+)", ultralytics.__version__)
    assert m, ultralytics.__version__
    assert tuple(int(g) for g in m.groups()[:3]) >= (8, 0, 0)
    assert 'name = "ultralytics"' in (REPO / "pyproject.toml").read_text()

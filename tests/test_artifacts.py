"""What each artifact carries: the wheel (what `pip install` gives a user) and the sdist."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Build both from a copy of the checkout (the build writes egg-info next to the code)."""
    root = tmp_path_factory.mktemp("artifacts")
    source = root / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".nox",
            "*.egg-info",
            "build",
            "dist",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
        ),
    )
    out = root / "dist"
    # As a release is built: python -m build, in an isolated environment with the
    # build-system's own requirements (not whatever setuptools this venv holds).
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    with tarfile.open(sdist) as archive:
        sdist_names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = archive.namelist()
    return {"sdist": sdist_names, "wheel": wheel_names}


def test_the_wheel_has_both_packages_their_data_and_the_license(built):
    names = built["wheel"]
    for expected in (
        "tracking_adapter/py.typed",
        "tracking_adapter/fixtures/clearbit_company.json",
        "tracking_adapter/receiver.py",  # a documented test helper for host apps' own tests
        "django_app/py.typed",
        "django_app/sql/record_event_v2.sql",
        "django_app/migrations/0004_mysql_ids_and_indexes.py",
        "django_app/management/commands/backfill_group_enriched.py",
    ):
        assert expected in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    assert not [name for name in names if name.startswith(("tests/", "bench/", "example_"))]


def test_the_sdist_is_the_source_and_its_documents_without_the_repositorys_suite(built):
    names = built["sdist"]
    for expected in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "MANIFEST.in"):
        assert expected in names
    assert "tracking_adapter/schema.py" in names
    assert any(name.startswith("django_app/templates/") for name in names)
    # Tests that need the rest of the suite (its conftest, its services) would fail there.
    assert not [name for name in names if name.startswith(("tests/", "bench/", "example_project/"))]

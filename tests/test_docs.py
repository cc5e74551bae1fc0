"""The documents a newcomer reads keep up with the code: LICENSE, CHANGELOG.md, README.md."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tracking_adapter

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGES = ("tracking_adapter", "django_app")


def section(title: str, *, subsections: bool = True) -> str:
    """The README's section whose heading is ``title``, down to the next heading of the same
    or a higher level (of any level without ``subsections``); fenced code blocks are not
    searched for headings."""
    lines = README.splitlines()
    in_fence = False
    start = level = None
    for number, line in enumerate(lines):
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence or not (heading := re.match(r"(#+) (.*)", line)):
            continue
        depth = len(heading.group(1))
        if start is None and heading.group(2).strip() == title:
            start, level = number, depth
        elif start is not None and level is not None and (depth <= level or not subsections):
            return "\n".join(lines[start:number])
    if start is None:
        raise AssertionError(f"README.md has no section {title!r}")
    return "\n".join(lines[start:])


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-])", text) is not None


def python_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


# -- LICENSE ---------------------------------------------------------------------------------


def test_license_is_the_mit_license_that_pyproject_declares():
    declared = PYPROJECT["project"]["license"]  # PEP 639's string, or the older table
    assert (declared if isinstance(declared, str) else declared.get("text")) == "MIT"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    authors = [author["name"] for author in PYPROJECT["project"]["authors"]]
    assert re.search(rf"^Copyright \(c\) \d{{4}} {re.escape(authors[0])}$", text, re.M)
    for clause in (
        "Permission is hereby granted, free of charge, to any person obtaining a copy",
        "The above copyright notice and this permission notice shall be included in all",
        'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR',
    ):
        assert clause in text


# -- CHANGELOG -------------------------------------------------------------------------------


def test_changelog_has_an_unreleased_section_or_one_for_the_current_version():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert versions, "no '## [version]' section"
    assert versions[0] in ("Unreleased", tracking_adapter.__version__), versions[0]


def test_the_readme_links_the_changelog():
    assert "[CHANGELOG.md](CHANGELOG.md)" in README


# -- README: what the code has ---------------------------------------------------------------


def test_every_management_command_is_in_the_readme():
    commands = sorted(
        path.stem
        for path in (REPO / "django_app" / "management" / "commands").glob("*.py")
        if not path.stem.startswith("_")
    )
    assert "deliver_events" in commands
    missing = [name for name in commands if not mentions(README, name)]
    assert not missing, f"README.md does not mention manage.py {missing}"


def logger_names() -> set[str]:
    """Every logger the package's code names: ``getLogger("literal")`` and
    ``getLogger(__name__)`` (its module's dotted name)."""
    names: set[str] = set()
    for path in python_files():
        source = path.read_text(encoding="utf-8")
        names.update(re.findall(r"getLogger\(\s*[\"']([^\"']+)[\"']\s*\)", source))
        if re.search(r"getLogger\(\s*__name__\s*\)", source):
            module = path.relative_to(REPO).with_suffix("")
            parts = module.parts[:-1] if module.name == "__init__" else module.parts
            names.add(".".join(parts))
    return names


def test_every_logger_the_code_uses_is_in_the_readmes_logging_section():
    names = logger_names()
    assert {"django_app", "django_app.dispatch", "tracking_adapter.sinks"} <= names
    logging_section = section("Logging")
    missing = sorted(name for name in names if f"`{name}`" not in logging_section)
    assert not missing, f"the README's Logging section does not name {missing}"


def test_the_readmes_logging_example_configures_and_shows_every_logger_at_info():
    [block] = re.findall(r"```python\n(.*?)```", section("Logging"), re.S)
    assert "LOGGING = {" in block
    probe = (
        block
        + "\nimport json, logging, logging.config, sys\n"
        + "logging.config.dictConfig(LOGGING)\n"
        + "names = json.loads(sys.argv[1])\n"
        + "print(json.dumps({n: logging.getLogger(n).isEnabledFor(logging.INFO)"
        + " and logging.getLogger(n).hasHandlers() for n in names}))\n"
    )
    names = sorted(logger_names())
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(names)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    shown = json.loads(result.stdout)
    assert shown == dict.fromkeys(names, True), shown


def test_every_extra_is_in_the_install_section():
    extras = sorted(PYPROJECT["project"]["optional-dependencies"])
    assert "django" in extras
    install = section("Install in your project", subsections=False)
    missing = [extra for extra in extras if f"`{extra}`" not in install]
    assert not missing, f"the Install section does not describe the extras {missing}"


def test_every_extra_the_readme_installs_exists():
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    used = {
        name.strip()
        for group in re.findall(r"tracking-adapter\[([^\]]+)\]", README)
        for name in group.split(",")
    }
    assert used, "the README installs no extra"
    assert used <= extras, f"the README installs extras pyproject lacks: {used - extras}"


def test_the_install_section_says_how_django_is_installed():
    base = [
        re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower()
        for dep in PYPROJECT["project"]["dependencies"]
    ]
    if "django" in base:
        pytest.skip("Django is a dependency of the base install")
    install = section("Install in your project", subsections=False)
    assert re.search(r"pip install \"tracking-adapter\[django[\],]", install)
    assert "not Django" in install


def test_every_migration_is_listed_in_the_upgrading_section():
    migrations = sorted(
        path.stem for path in (REPO / "django_app" / "migrations").glob("[0-9]*.py")
    )
    assert migrations[0] == "0001_initial"
    upgrading = section("Upgrading")
    missing = [name for name in migrations if f"`{name}`" not in upgrading]
    assert not missing, f"the Upgrading section does not describe {missing}"


def test_every_check_id_the_readme_names_exists():
    checks = (REPO / "django_app" / "checks.py").read_text(encoding="utf-8")
    known = set(re.findall(r"tracking_adapter\.[EW]\d{3}", checks))
    assert "tracking_adapter.E005" in known
    named = set(re.findall(r"tracking_adapter\.[EW]\d{3}", README))
    named |= {f"tracking_adapter.{short}" for short in re.findall(r"`([EW]\d{3})`", README)}
    assert named <= known, f"the README names checks that do not exist: {named - known}"


def test_the_endpoint_the_readme_gives_is_the_sinks_default_and_route():
    from tracking_adapter.sinks.thrivestack import DEFAULT_ENDPOINT, ThriveStackSink

    sink = ThriveStackSink(api_key="k")
    try:
        assert sink.url == f"{DEFAULT_ENDPOINT}/track"
    finally:
        sink.close()
    settings = section("Settings")
    assert f"`{DEFAULT_ENDPOINT}`" in settings
    assert f"`{DEFAULT_ENDPOINT}/track`" in settings


# -- README: links ---------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_every_link_inside_the_readme_leads_somewhere():
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    anchors = {slug(title) for title in re.findall(r"^#+ (.*)$", prose, re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", prose)
    assert links
    for link in links:
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        if link.startswith("#"):
            assert link[1:] in anchors, f"no heading for {link}"
        else:
            assert (REPO / link.split("#")[0]).exists(), f"no file {link}"

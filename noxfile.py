"""The supported matrix, runnable by hand: ``nox`` (all) or ``nox -s "tests-3.12(django='6.0')"``.

``make test`` runs the default interpreter only; this covers Python 3.11-3.13 against
Django 5.2 LTS and 6.x (Django 6 needs Python 3.12 or newer).
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]
DJANGOS = ["5.2", "6.0"]


@nox.session(python=PYTHONS)
@nox.parametrize("django", DJANGOS)
def tests(session: nox.Session, django: str) -> None:
    if django.startswith("6") and session.python == "3.11":
        session.skip("Django 6 needs Python 3.12 or newer")
    session.install("pip>=25.1")
    session.install("-e", ".", "--group", "test")
    session.install(f"Django~={django}.0")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("pip>=25.1")
    session.install("-e", ".", "--group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "tracking_adapter", "django_app")

"""Docs that cannot drift: the README covers every command, option and job-file key; the public API is exact."""

from __future__ import annotations

import argparse
import re
from types import ModuleType

import batch_engage
from batch_engage.cli.main import build_parser
from batch_engage.job.read import accepted_keys

from conftest import REPO

README = (REPO / "README.md").read_text()


def _subcommands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command, nested ones (``history import``) included, by its full name."""
    parser = parser or build_parser()
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found |= _subcommands(sub, prefix + name + " ")
    return found


def test_every_command_and_option_has_help_and_is_in_the_readme() -> None:
    """Each command and each of its options has help text, and the README names it."""
    for name, sub in _subcommands().items():
        assert f"batch-engage {name}" in README, name
        assert sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            for flag in action.option_strings:
                if flag.startswith("--"):
                    assert f"`{flag}" in README, (name, flag)


def test_readme_job_reference_lists_exactly_the_accepted_keys() -> None:
    """Every key the job file accepts is in the README's reference table, and every key there is accepted."""
    section = README.split("### Job-file reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", section, flags=re.MULTILINE))
    assert documented == set(accepted_keys())


def test_each_job_file_key_has_exactly_one_row_in_the_readme() -> None:
    """No key is documented twice (``input.encoding`` once was, with two different texts)."""
    section = README.split("### Job-file reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", section, flags=re.MULTILINE)
    assert sorted(rows) == sorted(set(rows))


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command is the one .ci/run runs (through .ci/check) in a fresh environment."""
    assert "pip install -e '.[test]' && pytest" in README
    ci = (REPO / ".ci" / "run").read_text()
    check = (REPO / ".ci" / "check").read_text()
    assert "pip install --quiet -e '.[test]'" in ci and "bash .ci/check" in ci
    assert re.search(r"^echo \"== pytest\"; pytest$", check, flags=re.MULTILINE)


def test_public_api_is_exactly_all() -> None:
    """batch_engage exports exactly the names in __all__ (submodules aside), each with a docstring."""
    public = {
        name
        for name in dir(batch_engage)
        if not name.startswith("_") and not isinstance(getattr(batch_engage, name), ModuleType)
    }
    assert public == set(batch_engage.__all__)
    for name in batch_engage.__all__:
        assert getattr(batch_engage, name).__doc__, name

"""The docs a newcomer reads are checked like code: the README stays short and in a user's
order, every link resolves (file and heading), every command names a program, script, make
target and options that exist, and the CLI reference is what the parser generates."""
from __future__ import annotations

import re

import pytest

from doc_commands import DOCS, ROOT, anchors, commands, links, options

README_SECTIONS = ["The two commands", "Install", "Use it in 3D Slicer", "Explain your own case", "Python API",
                   "Outputs and reading the report", "Performance of this release", "Documentation"]


def test_the_readme_is_short_and_in_a_users_order():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert re.findall(r"^## (.+)$", text, re.M) == README_SECTIONS
    assert all(f"docs/{p.name}" in text for p in (ROOT / "docs").glob("*.md"))    # every guide is linked


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_resolves(doc):
    bad = []
    for target in links(doc):
        if re.match(r"[a-z]+:", target):
            continue                    # a web address: not checked offline
        path, _, frag = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif frag and (dest.suffix != ".md" or frag not in anchors(dest)):
            bad.append(f"{target}: no such heading")
    assert not bad, f"{doc.name}: {bad}"


def shapseg_problems(words) -> list[str]:
    from ShapSegExplainLib.cli_docs import option_strings, subcommands
    from ShapSegExplainLib.cli import build_parser
    parser = build_parser()
    if words[1] not in subcommands(parser):
        return [f"no subcommand {words[1]!r}"]
    known = option_strings(words[1], parser)
    return [f"{o} is not an option of shapseg {words[1]}" for o in options(words) if o not in known]


def script_problems(words) -> list[str]:
    """A script's options are checked against its source: each must be declared there."""
    if words[1] == "-m":
        module = words[2]
        if module == "pytest" or module == "venv":
            return []
        path = ROOT / (module.replace(".", "/") + ".py")
        return [] if path.is_file() else [f"no module {module}"]
    path = ROOT / words[1]
    if not path.is_file():
        return [f"no script {words[1]}"]
    source = path.read_text()
    return [f"{o} is not declared in {words[1]}" for o in options(words)
            if f'"{o}"' not in source and f"'{o}'" not in source]


def make_problems(words) -> list[str]:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    return [f"no make target {t}" for t in words[1:] if t not in targets]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_exists_with_its_options(doc):
    found = commands(doc)
    bad = []
    for c in found:
        program = c.words[0]
        if program == "shapseg":
            bad += [f"{c.text}: {p}" for p in shapseg_problems(c.words)]
        elif program == "make":
            bad += [f"{c.text}: {p}" for p in make_problems(c.words)]
        elif program.endswith(("python", "python3")):
            bad += [f"{c.text}: {p}" for p in script_problems(c.words)]
    assert not bad, f"{doc.name}: {bad}"


def test_the_explain_option_tables_name_real_options():
    """The option tables of README and usage.md: each option exists in ``shapseg explain``."""
    from ShapSegExplainLib.cli_docs import option_strings
    known = option_strings("explain")
    for name in ("README.md", "docs/usage.md"):
        rows = re.findall(r"^\| (`--.*?) \|", (ROOT / name).read_text(), re.M)
        named = {o for row in rows for o in re.findall(r"`(--[a-z-]+)", row)}
        assert len(named) >= 5 and named <= known, (name, sorted(named - known))


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A broken link, a missing option and a missing script are caught (the checks can fail)."""
    assert shapseg_problems(("shapseg", "explain", "--no-such-option")) == [
        "--no-such-option is not an option of shapseg explain"]
    assert script_problems(("python", "benchmarks/no_such.py")) == ["no script benchmarks/no_such.py"]
    assert script_problems(("python", "benchmarks/bench_cost.py", "--no-such")) == [
        "--no-such is not declared in benchmarks/bench_cost.py"]
    assert make_problems(("make", "nothing")) == ["no make target nothing"]
    doc = tmp_path / "x.md"
    doc.write_text("# T\n\n[a](missing.md) [b](#t) [c](#nope)\n")
    assert links(doc) == ["missing.md", "#t", "#nope"] and anchors(doc) == {"t"}


def test_the_cli_reference_is_what_the_parser_generates():
    from ShapSegExplainLib.cli_docs import markdown
    assert (ROOT / "docs" / "cli.md").read_text() == markdown(), \
        "regenerate: python -m ShapSegExplainLib.cli_docs > docs/cli.md"

"""``docs/cli.md``, generated from the command line's own parser, so the reference cannot drift
from the options (``Testing/test_docs.py`` checks the file is what this writes):

    python -m ShapSegExplainLib.cli_docs > docs/cli.md

Written by hand: argparse prints help for a terminal, not Markdown; the walk over its actions
is what sphinx-argparse does, without Sphinx."""
from __future__ import annotations

import argparse
import sys

from .cli import build_parser

HEADER = """# Command-line reference

Generated from the parser by `python -m ShapSegExplainLib.cli_docs > docs/cli.md`; a test
checks that this file is what that command writes. What the options mean in practice:
[usage.md](usage.md).
"""


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The ``shapseg`` subcommands by name, in the parser's order."""
    return dict(_subparsers(parser).choices)


def subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.dest: a.help for a in _subparsers(parser)._choices_actions}


def option_cell(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest.upper()
    text = ", ".join(action.option_strings)
    if action.nargs != 0:
        if action.choices:
            text += " " + "\\|".join(map(str, action.choices))
        else:
            text += " " + (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
    return text


def help_cell(action: argparse.Action, prog: str) -> str:
    text = (action.help or "") % dict(vars(action), prog=prog)
    if action.required:
        text = "**required.** " + text
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(parser: argparse.ArgumentParser | None = None) -> str:
    parser = parser or build_parser()
    lines = [HEADER]
    helps = subcommand_help(parser)
    for name, sub in subcommands(parser).items():
        lines += [f"## shapseg {name}", "", helps.get(name, ""), "", "| option | meaning |", "|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            lines.append(f"| `{option_cell(action)}` | {help_cell(action, sub.prog)} |")
        lines.append("")
    return "\n".join(lines)


def option_strings(name: str, parser: argparse.ArgumentParser | None = None) -> set[str]:
    """Every option string ``shapseg NAME`` accepts (with ``shapseg``'s own)."""
    parser = parser or build_parser()
    top = {s for a in parser._actions for s in a.option_strings}
    return top | {s for a in subcommands(parser)[name]._actions for s in a.option_strings}


if __name__ == "__main__":
    sys.stdout.write(markdown())

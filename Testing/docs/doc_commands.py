"""Reading the Markdown docs as a test reads them: their links, and the commands they tell a
reader to type (fenced shell blocks and inline code), split into one command per line."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
PROGRAMS = ("shapseg", "python", "python3", ".venv/bin/python", ".venv-bench/bin/python", "make", "Slicer")


@dataclass(frozen=True)
class Command:
    doc: str          # file name, for the failure message
    text: str
    words: tuple[str, ...]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lstrip("#").strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {anchor(line) for line in text.splitlines() if line.startswith("#")}


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


def commands(path: Path) -> list[Command]:
    """Every command line of a doc that starts with one of ``PROGRAMS``."""
    text = path.read_text()
    pieces = []
    for lang, body in FENCE.findall(text):
        if lang in ("bash", "sh", ""):
            pieces += body.replace("\\\n", " ").splitlines()
    pieces += [s.replace("\n", " ") for s in INLINE.findall(FENCE.sub("", text))]
    found = []
    for piece in pieces:
        for part in re.split(r"&&|;|\|(?!\|)", piece.split(" # ")[0].split("  #")[0]):
            words = tuple(part.split())
            if words and words[0] in PROGRAMS and len(words) > 1:
                found.append(Command(path.name, part.strip(), words))
    return found


def options(words: tuple[str, ...]) -> list[str]:
    """The ``--options`` of a command's words (``--a=b`` is ``--a``)."""
    return [re.sub(r"[=,.)`:]+.*$", "", w) for w in words if re.match(r"--[a-z]", w)]


def python_blocks(path: Path, section: str | None = None) -> list[str]:
    """The ```python blocks of a doc, or of one ``## section`` of it, in order."""
    text = path.read_text()
    if section is not None:
        parts = re.split(r"^## ", text, flags=re.M)
        text = next(p for p in parts if p.startswith(section + "\n"))
    return [body for lang, body in FENCE.findall(text) if lang == "python"]

"""Every relative link in the repository's Markdown resolves: to a file or folder of the repository, and,
when it names an anchor, to a heading (GitHub's slugs) or an ``<a id>`` of the linked document.

Links to other sites (``https:``, ``mailto:``) are not followed: the tests never use the network.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = frozenset({"node_modules", "build", "dist"})

#: ``[text](target)`` or ``![alt](target)``, with an optional ``"title"``; and ``[label]: target`` definitions.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?[ \t]*(?:\"[^\"]*\")?[ \t]*$", re.M)
HTML_TARGET = re.compile(r"<(?:a|img)\b[^>]*\b(?:href|src)=\"([^\"]+)\"", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*\b(?:id|name)=\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
FENCE = re.compile(r"^ *(```|~~~).*?^ *\1", re.S | re.M)
CODE_SPAN = re.compile(r"(`+).+?\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _documents() -> list[Path]:
    """The repository's Markdown files; hidden folders (virtualenvs, caches, ``.git``) are not ours."""
    found: list[Path] = []
    for path in ROOT.rglob("*.md"):
        folders = path.relative_to(ROOT).parts[:-1]
        if path.is_file() and not SKIPPED_DIRS.intersection(folders) and not any(f.startswith(".") for f in folders):
            found.append(path)
    return sorted(found)


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are code, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8")
    seen: Counter[str] = Counter()
    anchors: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        slug = _slug(heading)
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    anchors.update(HTML_ANCHOR.findall(text))
    return frozenset(anchors)


def _targets(text: str) -> list[str]:
    prose = _prose(text)
    return INLINE_LINK.findall(prose) + REFERENCE_DEFINITION.findall(prose) + HTML_TARGET.findall(prose)


def _broken(path: Path) -> list[str]:
    problems: list[str] = []
    for target in _targets(path.read_text(encoding="utf-8")):
        if SCHEME.match(target) or target.startswith("//"):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if file_part.startswith("/") or not dest.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            problems.append(f"{target}: no heading or anchor #{anchor} in {dest.relative_to(ROOT)}")
    return problems


DOCUMENTS = _documents()


def test_the_scan_sees_the_documents() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/deploy.md", "docs/genesys-protocol.md", "CHANGELOG.md"} <= names
    assert sum(len(_targets(p.read_text(encoding="utf-8"))) for p in DOCUMENTS) > 20


def test_the_checks_catch_what_they_should() -> None:
    assert _slug("Outcomes: status and reason codes") == "outcomes-status-and-reason-codes"
    assert _slug("`session.start`") == "sessionstart"
    assert _slug("2.1 URL") == "21-url"
    assert _targets('[a](x.md) `[b](y.md)` ![c](img.png "t")\n\n[d]: z.md\n```\n[e](w.md)\n```\n') == [
        "x.md",
        "img.png",
        "z.md",
    ]


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.relative_to(ROOT).as_posix() for p in DOCUMENTS])
def test_every_relative_link_resolves(path: Path) -> None:
    broken = _broken(path)
    assert not broken, f"{path.relative_to(ROOT)}:\n" + "\n".join(broken)

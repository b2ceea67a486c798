"""Protocol citations resolve, and the repository points at nothing outside itself.

Code comments, tests and documents cite ``docs/genesys-protocol.md`` (the protocol reference) as ``§N``,
``§N.M`` or ``§N.Mx``. The reference's convention, checked by :func:`test_headings_follow_the_convention`:

* ``§N`` is the heading ``## N. Title`` and ``§N.M`` the heading ``### N.M Title`` (deeper numbers work
  the same way, one ``#`` per level, but the reference has none today);
* ``§N.Mx``, one lower-case letter after the number, is a lettered part of §N.M, the heading
  ``#### N.Mx Title`` placed inside §N.M. Its letters run a, b, c … without gaps;
* a citation with any other suffix (two letters, a capital letter) names nothing and fails.

The reference is the repository's own document: nothing may point at the shared working notes it was
written from, at sections of an architecture document, at the numbered habits of a style guide or at
tracker issues.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "docs" / "genesys-protocol.md"
THIS_FILE = Path(__file__).resolve()

#: Where citations and outside references are looked for.
SCANNED = ("bridge", "tests", "bench", "docs", "README.md", "CHANGELOG.md")
#: Files that hold prose or comments. Generated JSON (``docs/contract``, bench results) is included for the
#: outside-reference check; citations in it come from ``bridge/`` and are checked there.
CITING_SUFFIXES = frozenset({".py", ".md"})
TEXT_SUFFIXES = CITING_SUFFIXES | {".json", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini"}
SKIPPED_DIRS = frozenset({"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"})

#: A numbered heading: level, number, optional letter, then ``.`` or a space before the title.
HEADING = re.compile(r"^(#{2,6}) (\d+(?:\.\d+)*)([a-z]?)(?:\.| )")
#: A citation. The suffix is captured whole so that a malformed one fails instead of being cut short.
CITATION = re.compile(r"§ ?(\d+(?:\.\d+)*)([A-Za-z]*)")

#: What must never appear: (label, pattern).
OUTSIDE_REFERENCES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("the shared directory", re.compile(r"\.\./shared")),
    ("the shared protocol notes", re.compile(r"genesys-webmessaging-protocol\.md")),
    ("an architecture section", re.compile(r"architecture[^\S\n]*\(?[^\S\n]*§", re.IGNORECASE)),
    ("a style-guide habit", re.compile(r"style[^\S\n]+habit", re.IGNORECASE)),
    ("the perf baseline notes", re.compile(r"perf-baseline\.md")),
    ("an issue number", re.compile(r"\bissues?[^\S\n]*#?[^\S\n]*\d+", re.IGNORECASE)),
)


def _files(suffixes: frozenset[str]) -> Iterator[Path]:
    for name in SCANNED:
        top = ROOT / name
        if top.is_file():
            yield top
            continue
        for path in sorted(top.rglob("*")):
            if path.is_file() and path.suffix in suffixes and not SKIPPED_DIRS.intersection(path.parts):
                yield path


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return
    yield from enumerate(text.splitlines(), start=1)


def _where(path: Path, line_no: int) -> str:
    return f"{path.relative_to(ROOT)}:{line_no}"


def _headings() -> list[tuple[int, str, str, int]]:
    """Numbered headings of the reference as (level, number, letter, line), outside code fences."""
    found: list[tuple[int, str, str, int]] = []
    fenced = False
    for line_no, line in _lines(PROTOCOL):
        if line.startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            found.append((len(match[1]), match[2], match[3], line_no))
    return found


def _sections() -> set[str]:
    return {number + letter for _, number, letter, _ in _headings()}


def test_the_reference_has_every_section_of_the_protocol() -> None:
    sections = _sections()
    expected = {str(n) for n in range(17)}
    expected |= {"2.1", "2.2", "2.3", "2.4", "3.1", "3.2", "5.1", "5.2", "5.3", "5.4", "13.1"}
    expected |= {f"4.{m}" for m in range(1, 11)} | {f"4.3{x}" for x in "abcdefg"}
    expected |= {f"11.{m}" for m in range(1, 15)} | {f"14.{m}" for m in range(1, 9)}
    assert expected <= sections, sorted(expected - sections, key=_sort_key)


def _sort_key(section: str) -> tuple[int, ...]:
    number = section.rstrip("abcdefghijklmnopqrstuvwxyz")
    letter = section[len(number) :]
    return (*map(int, number.split(".")), ord(letter) if letter else 0)


def test_headings_follow_the_convention() -> None:
    problems: list[str] = []
    seen: set[str] = set()
    previous: tuple[int, ...] = (-1,)
    parent: str | None = None  # the last unlettered heading
    last_letter = ""
    for level, number, letter, line_no in _headings():
        key = number + letter
        where = f"line {line_no} ({key})"
        if key in seen:
            problems.append(f"{where}: duplicate section")
        seen.add(key)
        depth = number.count(".") + 1
        if letter:
            # A lettered part sits inside its parent, one level below it, in alphabetical order.
            if number != parent or level != depth + 2:
                problems.append(f"{where}: a lettered part must be a level-{depth + 2} heading inside §{number}")
            expected = chr(ord(last_letter) + 1) if last_letter else "a"
            if letter != expected:
                problems.append(f"{where}: expected letter {expected!r}")
            last_letter = letter
        else:
            if level != depth + 1:
                problems.append(f"{where}: §{number} must be a level-{depth + 1} heading")
            if depth > 1 and number.rsplit(".", 1)[0] not in seen:
                problems.append(f"{where}: no parent §{number.rsplit('.', 1)[0]}")
            parent, last_letter = number, ""
        current = _sort_key(key)
        if current <= previous:
            problems.append(f"{where}: out of order")
        previous = current
    assert not problems, "\n".join(problems)


def test_every_citation_names_a_section_of_the_reference() -> None:
    sections = _sections()
    unresolved: list[str] = []
    count = 0
    for path in _files(CITING_SUFFIXES):
        for line_no, line in _lines(path):
            for match in CITATION.finditer(line):
                count += 1
                number, suffix = match[1], match[2]
                ok = (suffix == "" or (len(suffix) == 1 and suffix.islower())) and number + suffix in sections
                if not ok:
                    unresolved.append(f"{_where(path, line_no)}: {match[0]}")
    assert count > 100, "the scan found almost no citations: is the pattern still right?"
    assert not unresolved, "citations naming no section of docs/genesys-protocol.md:\n" + "\n".join(unresolved)


def test_the_behaviour_table_names_modules_and_tests_that_exist() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    missing: list[str] = []
    modules = set(re.findall(r"`(bridge/[\w/]+\.py)`", text))
    missing += [m for m in sorted(modules) if not (ROOT / m).is_file()]
    for path, name in sorted(set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text))):
        source = ROOT / path
        if not source.is_file() or not re.search(rf"^\s*(?:async )?def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert modules, "the reference names no module"
    assert not missing, "\n".join(missing)


def _outside_references() -> list[str]:
    found: list[str] = []
    for path in _files(TEXT_SUFFIXES):
        if path == THIS_FILE:
            continue  # it spells the patterns out
        for line_no, line in _lines(path):
            for label, pattern in OUTSIDE_REFERENCES:
                match = pattern.search(line)
                if match:
                    found.append(f"{_where(path, line_no)}: {label}: {match[0]!r}")
    return found


def test_the_patterns_catch_what_they_should() -> None:
    # Built from parts, so that this file does not itself contain what it forbids.
    samples = {
        "see " + "../" + "shared/docs/x.md": "the shared directory",
        "(architecture " + "§5)": "an architecture section",
        "the architecture (" + "§3 rules)": "an architecture section",
        "Failure containment (Style " + "habit 3)": "a style-guide habit",
        "issue " + "4: recovery": "an issue number",
        "pytest-asyncio issue " + "#724": "an issue number",
    }
    for text, label in samples.items():
        assert [lb for lb, p in OUTSIDE_REFERENCES if p.search(text)] == [label], text
    assert not any(p.search("the issue is §4.1; issues remain") for _, p in OUTSIDE_REFERENCES)


def test_nothing_points_outside_the_repository() -> None:
    found = _outside_references()
    assert not found, "references to material outside the repository:\n" + "\n".join(found)

"""Every citation of a section, `docs/design.md "<heading>"` or `README "<heading>"` (in code, templates
and the documents themselves), names a heading that exists: the heading, or its start up to a word's end
(`"Workers"` cites "Workers (runtime)")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tests.unit.test_layout import OURS, ROOT

TREES = (*OURS, "tests", "benchmarks", "CloudFormation", "docker", "docs")
DOCUMENTS = {"design": ROOT / "docs" / "design.md", "README": ROOT / "README.md"}
# `docs/design.md "<heading>"`, `README "<heading>"`, `README's "<heading>"`, `(README: "<heading>")`; a
# title may wrap onto the next line of a comment. Titles start with a capital or a backquote, as every
# heading does (so `open("README.md")` is no citation).
CITATION = re.compile(r"""(design|README)(?:\.md)?(?:'s)?[\s#,(:]*"([A-Z`][^"]{0,100}?)\"""")


def headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{1,6} ", line)]


def resolves(title: str, heads: list[str]) -> bool:
    return any(h == title or (h.startswith(title) and not h[len(title)].isalnum()) for h in heads)


def citations(text: str) -> Iterator[tuple[int, str, str]]:
    """(line, document, title) of each citation in a text."""
    for match in CITATION.finditer(text):
        title = re.sub(r"\s*\n\s*#?\s*", " ", match[2])
        yield text.count("\n", 0, match.start()) + 1, match[1], title


def test_every_cited_section_exists() -> None:
    heads = {name: headings(path.read_text(encoding="utf-8")) for name, path in DOCUMENTS.items()}
    files = [ROOT / "README.md", *(p for tree in TREES for p in sorted((ROOT / tree).rglob("*")))]
    broken = [
        f"{path.relative_to(ROOT)}:{line}: {document} {title!r}"
        for path in files
        if path.is_file()
        and path != Path(__file__)
        and path.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".Dockerfile"}
        for line, document, title in citations(path.read_text(encoding="utf-8"))
        if not resolves(title, heads[document])
    ]
    assert broken == []


def test_the_citation_check_reads_what_it_should() -> None:
    """The check itself: forms of a citation, a title wrapped in a comment, prefixes only at a word's end."""
    text = (
        'a (docs/design.md "Code\n    # layout") b README\'s "Limits" c README.md: "Arena"\nopen("README.md")'
    )
    assert list(citations(text)) == [
        (1, "design", "Code layout"),
        (2, "README", "Limits"),
        (2, "README", "Arena"),
    ]
    heads = headings("# Top\n## Workers (runtime)\n### Limits\n#not a heading")
    assert heads == ["Top", "Workers (runtime)", "Limits"]
    assert resolves("Workers", heads)
    assert resolves("Limits", heads)
    assert not resolves("Work", heads)
    assert not resolves("Rollout", heads)

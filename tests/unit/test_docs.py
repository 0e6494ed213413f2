"""The documentation holds together: links resolve, every page is reachable from the README, the README stays
short, and the architecture page names only files that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...
# A repo path as the architecture page writes it: a top-level folder, then a file or folder (placeholders allowed).
REPO_PATH = re.compile(r"`((?:tasks|flows|bentos|deployments|tests|benchmarks|docs|mlflow)/[\w./<>-]*)`")


def prose(markdown: str) -> str:
    """The text outside fenced code blocks: what GitHub renders as links and headings."""
    return FENCE.sub("", markdown)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower-cased, punctuation dropped, spaces as '-'."""
    text = CODE_SPAN.sub(lambda match: match.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[*_]{1,3}(\S(?:.*?\S)?)[*_]{1,3}", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path.read_text())):
        slug = github_slug(heading)
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def relative_links(path: Path) -> list[str]:
    """The link and image targets of a Markdown file that point inside the repository."""
    text = CODE_SPAN.sub("", prose(path.read_text()))
    return [target for target in LINK.findall(text) if not EXTERNAL.match(target)]


def broken_links(path: Path) -> list[str]:
    """Each relative link of the file whose target file, or heading anchor, does not exist."""
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading '#{anchor}' in {resolved.relative_to(ROOT)}")
    return broken


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(README)}
    assert PAGES and [page.name for page in PAGES if page not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_every_page_says_what_it_covers_and_links_back_to_the_readme(page: Path) -> None:
    title, blank, summary = page.read_text().splitlines()[:3]
    assert title.startswith("# ") and not blank and summary
    assert README in {(page.parent / target.partition("#")[0]).resolve() for target in relative_links(page)}


def test_readme_stays_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_architecture_names_only_files_that_exist() -> None:
    """A placeholder (`tasks/model/families/<name>.py`) is checked up to the folder that holds it."""
    named = REPO_PATH.findall((ROOT / "docs" / "architecture.md").read_text())
    missing = [
        path
        for path in named
        if not (ROOT / path.split("<")[0].rpartition("/")[0] if "<" in path else ROOT / path).exists()
    ]
    assert len(named) > 20 and missing == []


def test_slugs_follow_github() -> None:
    assert github_slug("The `greenlight` command") == "the-greenlight-command"
    assert github_slug("Distributed training (torchrun, DDP)") == "distributed-training-torchrun-ddp"
    assert github_slug("Run settings: `--data`, `--config`") == "run-settings---data---config"
    assert github_slug("Production stack (PostgreSQL + S3)") == "production-stack-postgresql--s3"

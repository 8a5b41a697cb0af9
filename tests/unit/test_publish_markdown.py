"""The Markdown publisher: URL -> file inside the root only, idempotent edits, atomic writes, git commits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sitesteward.errors import ConfigurationError, PermanentError, PolicyViolation
from sitesteward.models import Edit
from sitesteward.publish import (
    EditConflict,
    MarkdownContentTarget,
    Target,
    TargetNotFound,
    apply_edits,
    edit_contained,
)

BASE = "https://docs.example.test/"
GUIDE = (
    "---\ntitle: Setup guide\ndescription: 'How to set up, as of 2021.'\n---\n"
    "# Setup\n\nAs of 2021 the CLI needs Python 3.8.\n"
)


def edit(kind: str = "replace_text", old: str = "As of 2021", new: str = "As of 2026") -> Edit:
    return Edit(kind=kind, old=old, new=new, finding="stale_date")  # type: ignore[arg-type]


class CountingTarget(MarkdownContentTarget):
    """Counts real file writes."""

    writes = 0

    def _write(self, path: Path, text: str) -> None:
        type(self).writes += 1
        super()._write(path, text)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    (root / "guide").mkdir(parents=True)
    (root / "index.md").write_text("# Home\n\nWelcome.\n")
    (root / "guide.md").write_text(GUIDE)
    (root / "guide" / "setup.md").write_text("# Deeper\n")
    (root / "about").mkdir()
    (root / "about" / "index.md").write_text("# About us\n")
    (tmp_path / "secret.md").write_text("top secret\n")
    return root


@pytest.fixture
def publisher(site: Path) -> CountingTarget:
    CountingTarget.writes = 0
    return CountingTarget(site, BASE)


# ---------------------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("url", "location"),
    [
        (BASE, "index.md"),
        ("https://docs.example.test", "index.md"),
        (BASE + "guide/", "guide.md"),
        (BASE + "guide/setup/", "guide/setup.md"),
        (BASE + "about/", "about/index.md"),
        (BASE + "about/index.html", "about/index.md"),
        (BASE + "guide/?utm=x#top", "guide.md"),
        ("HTTPS://DOCS.EXAMPLE.TEST/guide/", "guide.md"),
    ],
)
def test_url_maps_to_the_content_file(publisher: CountingTarget, url: str, location: str) -> None:
    target = publisher.target_for(url)
    assert target == Target(publisher="markdown", page_url=url, location=location)


def test_base_path_prefix_is_stripped(site: Path) -> None:
    nested = MarkdownContentTarget(site, "https://example.test/docs/")
    assert nested.target_for("https://example.test/docs/guide/").location == "guide.md"
    with pytest.raises(PolicyViolation, match="outside the published base path"):
        nested.target_for("https://example.test/docsx/guide/")


@pytest.mark.parametrize(
    "url",
    [
        BASE + "../secret/",
        BASE + "guide/../../secret/",
        BASE + "%2e%2e/secret/",
        BASE + "%2E%2E/%2e%2e/secret",
        BASE + "guide/%2e%2e/%2e%2e/secret",
        BASE + "..%2fsecret",
        BASE + "..%5csecret",
        BASE + "%00/guide/",
        BASE + ".git/config",
        BASE + "%ff%fe/",
        "https://evil.test/guide/",
        "http://docs.example.test/guide/",
        "file:///etc/passwd",
        "/etc/passwd",
    ],
)
def test_traversal_and_foreign_urls_are_refused(publisher: CountingTarget, url: str) -> None:
    with pytest.raises(PolicyViolation):
        publisher.target_for(url)


def test_encoded_absolute_path_stays_inside_the_root(publisher: CountingTarget) -> None:
    # "//etc/passwd" is a relative path under the root once split: nothing there, nothing outside read.
    with pytest.raises(TargetNotFound):
        publisher.target_for(BASE + "%2Fetc%2Fpasswd")


def test_symlinks_escaping_the_root_are_refused(site: Path, publisher: CountingTarget) -> None:
    outside = site.parent / "outside"
    outside.mkdir()
    (outside / "page.md").write_text("outside\n")
    (site / "leak.md").symlink_to(site.parent / "secret.md")
    (site / "elsewhere").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PolicyViolation, match="outside the content root"):
        publisher.target_for(BASE + "leak/")
    with pytest.raises(PolicyViolation, match="outside the content root"):
        publisher.target_for(BASE + "elsewhere/page/")


def test_symlink_inside_the_root_resolves_to_the_real_file(site: Path, publisher: CountingTarget) -> None:
    (site / "alias.md").symlink_to(site / "guide.md")
    target = publisher.target_for(BASE + "alias/")
    assert target.location == "guide.md"
    publisher.apply(target, [edit()], "k")
    assert (site / "alias.md").is_symlink()  # the link was not replaced by a file
    assert "As of 2026" in (site / "guide.md").read_text()


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.md", "guide/../../secret.md", "a\\..\\b.md"])
def test_hand_made_targets_are_checked_again(publisher: CountingTarget, location: str) -> None:
    with pytest.raises(PolicyViolation):
        publisher.apply(Target(publisher="markdown", page_url=BASE, location=location), [edit()], "k")
    with pytest.raises(PolicyViolation):
        publisher.read(Target(publisher="markdown", page_url=BASE, location=location))


def test_wrong_publisher_and_missing_pages(publisher: CountingTarget) -> None:
    with pytest.raises(PolicyViolation):
        publisher.read(Target(publisher="wordpress", page_url=BASE, location="index.md"))
    with pytest.raises(TargetNotFound, match=r"tried nope\.md, nope/index\.md"):
        publisher.target_for(BASE + "nope/")
    with pytest.raises(ConfigurationError):
        MarkdownContentTarget(Path("/definitely/not/here"), BASE)
    with pytest.raises(ConfigurationError):
        MarkdownContentTarget(publisher.content_root, "ftp://x/")


# ------------------------------------------------------------------------------------------ edits


def test_replace_text_applies_once(site: Path, publisher: CountingTarget) -> None:
    target = publisher.target_for(BASE + "guide/")
    first = publisher.apply(target, [edit()], "job:publish:a")
    content = (site / "guide.md").read_text()
    assert content.count("As of 2026") == 1 and "As of 2021" not in content
    assert first.startswith("sha256:")
    second = publisher.apply(target, [edit()], "job:publish:a")
    assert second == first
    assert (site / "guide.md").read_text() == content
    assert publisher.writes == 1
    assert publisher.contains(edit(), content)
    assert not publisher.contains(edit(), GUIDE)


def test_body_edits_keep_front_matter_byte_exact() -> None:
    raw = "---\ntitle:   'Odd  spacing'\ntags: [a,b]\n---\r\nAs of 2021 text\r\n"
    out = apply_edits(raw, [edit()])
    assert out == raw.replace("As of 2021", "As of 2026")


def test_new_text_containing_old_text_is_still_idempotent() -> None:
    grow = edit(old="Python 3", new="Python 3.12")
    once = apply_edits("Use Python 3 here. Python 3 everywhere.\n", [grow])
    assert once == "Use Python 3.12 here. Python 3.12 everywhere.\n"
    assert apply_edits(once, [grow]) == once
    partly = "Use Python 3.12 here. Python 3 everywhere.\n"
    assert apply_edits(partly, [grow]) == once


def test_replace_text_conflicts_write_nothing(site: Path, publisher: CountingTarget) -> None:
    target = publisher.target_for(BASE + "guide/")
    edits = [edit(), edit(old="text that is gone", new="replacement")]
    with pytest.raises(EditConflict, match="text that is gone") as caught:
        publisher.apply(target, edits, "k")
    assert isinstance(caught.value, PermanentError)
    assert (site / "guide.md").read_text() == GUIDE
    assert publisher.writes == 0
    with pytest.raises(PolicyViolation):
        apply_edits(GUIDE, [edit(old="", new="x")])


def test_deleting_text() -> None:
    delete = edit(old=" the CLI", new="")
    once = apply_edits(GUIDE, [delete])
    assert " the CLI" not in once
    assert apply_edits(once, [delete]) == once


def test_set_title_and_description() -> None:
    title = edit("set_title", old="Setup guide", new="Set up Larkspur in five minutes")
    description = edit(
        "set_description", old="How to set up, as of 2021.", new="How to set up Larkspur today."
    )
    out = apply_edits(GUIDE, [title, description])
    assert "title: Set up Larkspur in five minutes\n" in out
    assert "description: How to set up Larkspur today.\n" in out
    assert out.endswith("# Setup\n\nAs of 2021 the CLI needs Python 3.8.\n")
    assert apply_edits(out, [title, description]) == out
    with pytest.raises(EditConflict, match="the page changed"):
        apply_edits(GUIDE, [edit("set_title", old="Another title", new="New")])


def test_set_title_on_a_file_without_front_matter() -> None:
    add = edit("set_title", old="", new="Home")
    out = apply_edits("# Home\n", [add])
    assert out == "---\ntitle: Home\n---\n# Home\n"
    assert apply_edits(out, [add]) == out


def test_add_link_only_when_absent() -> None:
    link = edit(
        "add_link",
        old="need Python 3.8 or newer",
        new="need [Python 3.8](https://www.python.org/downloads/) or newer",
    )
    content = "# Guide\n\nYou need Python 3.8 or newer to build.\n"
    out = apply_edits(content, [link])
    assert "[Python 3.8](https://www.python.org/downloads/)" in out
    assert edit_contained(link, out)
    assert apply_edits(out, [link]) == out
    already = 'See [downloads](https://www.python.org/downloads/ "Python"); you need Python 3.8 or newer.\n'
    assert apply_edits(already, [link]) == already  # the page links there already: never twice
    with pytest.raises(EditConflict):
        apply_edits("# Nothing to link\n", [link])


@pytest.mark.parametrize(
    "href", ["javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "vbscript:x"]
)
def test_add_link_refuses_unsafe_targets(href: str) -> None:
    unsafe = edit("add_link", old="Python 3.8 or newer", new=f"[Python 3.8]({href}) or newer")
    with pytest.raises(PolicyViolation):
        apply_edits("You need Python 3.8 or newer.\n", [unsafe])


def test_add_link_must_add_a_link() -> None:
    with pytest.raises(PolicyViolation, match="adds no link"):
        apply_edits("Python 3.8.\n", [edit("add_link", old="Python 3.8", new="Python 3.9")])


# ------------------------------------------------------------------------------------ atomicity


def test_a_failed_write_leaves_the_old_file_and_no_temp_files(
    site: Path, publisher: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = publisher.target_for(BASE + "guide/")
    before = sorted(p.name for p in site.iterdir())

    def broken_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk gone"):
        publisher.apply(target, [edit()], "k")
    assert (site / "guide.md").read_text() == GUIDE
    assert sorted(p.name for p in site.iterdir()) == before


def test_write_replaces_the_file_and_keeps_its_mode(site: Path, publisher: CountingTarget) -> None:
    path = site / "guide.md"
    path.chmod(0o640)
    inode = path.stat().st_ino
    publisher.apply(publisher.target_for(BASE + "guide/"), [edit()], "k")
    assert path.stat().st_ino != inode  # a new file renamed into place, not an in-place rewrite
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in site.iterdir() if p.name.endswith(".tmp")] == []


# ------------------------------------------------------------------------------------------- git


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(site: Path) -> Path:
    _git(site, "init", "--quiet")
    _git(site, "config", "user.name", "Test")
    _git(site, "config", "user.email", "test@example.test")
    _git(site, "add", ".")
    _git(site, "commit", "--quiet", "-m", "initial")
    return site


def test_git_commit_once_with_the_key(repo: Path) -> None:
    publisher = MarkdownContentTarget(repo, BASE, git_commit=True)
    target = publisher.target_for(BASE + "guide/")
    revision = publisher.apply(target, [edit()], "job1:publish:abc")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert revision == f"git:{head}"
    assert "Idempotency-Key: job1:publish:abc" in _git(repo, "log", "-1", "--format=%B")
    assert _git(repo, "status", "--porcelain") == ""
    assert publisher.apply(target, [edit()], "job1:publish:abc") == revision
    assert _git(repo, "rev-list", "--count", "HEAD").strip() == "2"


def test_git_commits_only_the_target_file(repo: Path) -> None:
    (repo / "index.md").write_text("# Home, edited by hand\n")
    publisher = MarkdownContentTarget(repo, BASE, git_commit=True)
    publisher.apply(publisher.target_for(BASE + "guide/"), [edit()], "k")
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["guide.md"]
    assert _git(repo, "status", "--porcelain").strip() == "M index.md"


def test_git_finishes_a_commit_a_crash_interrupted(repo: Path) -> None:
    (repo / "guide.md").write_text(apply_edits(GUIDE, [edit()]))  # written, never committed
    publisher = CountingTarget(repo, BASE, git_commit=True)
    CountingTarget.writes = 0
    revision = publisher.apply(publisher.target_for(BASE + "guide/"), [edit()], "k")
    assert publisher.writes == 0
    assert revision == "git:" + _git(repo, "rev-parse", "HEAD").strip()
    assert _git(repo, "status", "--porcelain") == ""


def test_git_option_outside_a_repository_is_a_configuration_error(site: Path) -> None:
    publisher = MarkdownContentTarget(site, BASE, git_commit=True)
    with pytest.raises(ConfigurationError, match="not in a git work tree"):
        publisher.apply(publisher.target_for(BASE + "guide/"), [edit()], "k")
    assert (site / "guide.md").read_text() == GUIDE  # refused before writing


def test_dropping_a_dead_link_keeps_its_text_and_is_idempotent() -> None:
    drop = edit("replace_text", old="[filtering spam](/guides/spam-filtering/)", new="filtering spam")
    content = "Read about [filtering spam](/guides/spam-filtering/).\n"
    out = apply_edits(content, [drop])
    assert out == "Read about filtering spam.\n"
    assert edit_contained(drop, out) and not edit_contained(drop, content)
    assert apply_edits(out, [drop]) == out


def test_front_matter_edits_change_only_their_own_line() -> None:
    content = (
        "---\ntitle: A title that is far too long for search results\naliases:\n  - /old/\n"
        "date: 2024-01-02\n---\n# Body\n"
    )
    title = edit("set_title", old="A title that is far too long for search results", new="A short title")
    description = edit("set_description", old="", new="What the page is about: a short summary.")
    out = apply_edits(content, [title, description])
    assert out == (
        "---\ntitle: A short title\naliases:\n  - /old/\ndate: 2024-01-02\n"
        "description: 'What the page is about: a short summary.'\n---\n# Body\n"
    )
    assert edit_contained(title, out) and edit_contained(description, out)
    assert apply_edits(out, [title, description]) == out

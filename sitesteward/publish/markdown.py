"""Publish to a directory of Markdown files with YAML front matter (static sites), optionally via git.

The URL -> file mapping is :func:`sitesteward.content.candidate_files`, the one the demo server uses.
Edits, all idempotent by construction:

- ``replace_text``: every occurrence of ``old`` in the body becomes ``new``. Already done (``new`` present,
  ``old`` absent outside it) is a no-op; neither present is an :class:`EditConflict`.
- ``set_title`` / ``set_description``: front matter ``title`` / ``description`` becomes ``new``, provided
  it is still ``old`` (``old=""``: the key is absent or empty) or already ``new``.
- ``add_link``: like ``replace_text`` (``old`` is plain text, ``new`` the same text with a Markdown link
  added, as the drafter writes it and the reviewer sees it), except that it is a no-op when the body
  already links to every URL it adds (a link is added only if absent, never twice), and each added URL
  must be safe.

Writes are atomic (temp file in the same directory, fsync, ``os.replace``, directory fsync): a crash
leaves the old file or the new one, never a mix, and a failing edit writes nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import yaml

from sitesteward.content import Document, candidate_files, dump_document, parse_document
from sitesteward.errors import ConfigurationError, PolicyViolation
from sitesteward.models import Edit
from sitesteward.publish.base import EditConflict, Target, TargetNotFound

_META_KEYS = {"set_title": "title", "set_description": "description"}
_UNSAFE_HREF = re.compile(r"[\s()<>\"'`\\]")
_ALLOWED_SCHEMES = {"http", "https", "mailto", ""}


class MarkdownContentTarget:
    """A content directory of ``.md`` files served under ``base_url``.

    Args:
        content_root: The directory holding the site's Markdown files.
        base_url: The site's public URL that maps to ``content_root`` (``https://example.com/docs/``).
        git_commit: Commit each change (``git add`` + ``git commit`` of that one file, the idempotency key in
            the message) when ``content_root`` is inside a git work tree.
    """

    name = "markdown"

    def __init__(self, content_root: Path, base_url: str, git_commit: bool = False) -> None:
        self.content_root = Path(content_root).resolve()
        if not self.content_root.is_dir():
            raise ConfigurationError(f"content root {self.content_root} is not a directory")
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigurationError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url
        self._origin = (parts.scheme.lower(), parts.netloc.lower())
        self._base_path = parts.path.rstrip("/")
        self.git_commit = git_commit

    # ------------------------------------------------------------------------------- targets

    def target_for(self, page_url: str) -> Target:
        """Map a page URL under ``base_url`` to its Markdown file.

        The path is percent-decoded once (as the web server does) and then checked by
        :func:`candidate_files`; the chosen file must resolve, symlinks followed, inside the content root.

        Raises:
            PolicyViolation: another origin, outside the base path, ``..``/backslash/NUL, or a path or
                symlink that leaves the content root.
            TargetNotFound: no candidate file exists.
        """
        parts = urlsplit(page_url)
        if (parts.scheme.lower(), parts.netloc.lower()) != self._origin:
            raise PolicyViolation(f"{page_url!r} is not on this site ({self.base_url})")
        path = parts.path or "/"
        if path != self._base_path and not path.startswith(self._base_path + "/"):
            raise PolicyViolation(f"{page_url!r} is outside the published base path {self._base_path or '/'}")
        try:
            relative = unquote(path[len(self._base_path) :], errors="strict") or "/"
        except UnicodeDecodeError as exc:
            raise PolicyViolation(f"{page_url!r} has a path that is not UTF-8 once decoded") from exc
        for candidate in candidate_files(relative):
            resolved = self._resolve(candidate.as_posix())
            if resolved.is_file():
                location = resolved.relative_to(self.content_root).as_posix()
                return Target(publisher=self.name, page_url=page_url, location=location)
        tried = ", ".join(c.as_posix() for c in candidate_files(relative))
        raise TargetNotFound(f"no content file for {page_url!r} under {self.content_root} (tried {tried})")

    def read(self, target: Target) -> str:
        """The file's text (UTF-8, line endings kept)."""
        return self._path(target).read_bytes().decode("utf-8")

    # ---------------------------------------------------------------------------------- edits

    def contains(self, edit: Edit, content: str) -> bool:
        """Tell whether ``content`` already holds the result of ``edit``."""
        return edit_contained(edit, content)

    def apply(self, target: Target, edits: Sequence[Edit], key: str) -> str:
        """Apply the edits to the target file atomically; return the revision.

        Returns:
            ``git:<commit>`` when committing to git, else ``sha256:<digest of the new content>``.

        Raises:
            EditConflict: an edit no longer applies (the file is untouched).
            PolicyViolation: the target leaves the content root or an edit is unsafe.
            ConfigurationError: ``git_commit`` is set and git fails (no work tree, no identity).
        """
        path = self._path(target)
        if self.git_commit:
            self._require_work_tree()  # before writing: never leave an uncommittable change behind
        original = path.read_bytes().decode("utf-8")
        updated = apply_edits(original, edits)
        if updated != original:
            self._write(path, updated)
        if self.git_commit:
            return "git:" + self._commit(path, key)
        return "sha256:" + hashlib.sha256(updated.encode("utf-8")).hexdigest()

    # -------------------------------------------------------------------------------- private

    def _resolve(self, relative: str) -> Path:
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts or "\\" in relative or "\x00" in relative:
            raise PolicyViolation(f"refusing content path {relative!r}")
        resolved = (self.content_root / pure).resolve()
        if not resolved.is_relative_to(self.content_root):
            raise PolicyViolation(f"{relative!r} resolves outside the content root")
        return resolved

    def _path(self, target: Target) -> Path:
        if target.publisher != self.name:
            raise PolicyViolation(f"target is for publisher {target.publisher!r}, not {self.name!r}")
        path = self._resolve(target.location)
        if path.suffix != ".md" or not path.is_file():
            raise TargetNotFound(f"{target.location!r} is not a Markdown file under {self.content_root}")
        return path

    def _write(self, path: Path, text: str) -> None:
        """Replace ``path`` atomically with ``text`` (same directory temp file, fsync, rename)."""
        descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temp = Path(temp_name)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            temp.chmod(path.stat().st_mode & 0o7777)
            temp.replace(path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)

    def _git(self, *args: str) -> subprocess.CompletedProcess[str]:
        git = shutil.which("git")
        if git is None:
            raise ConfigurationError("git_commit is set but git is not installed")
        return subprocess.run(  # noqa: S603 - fixed argv, no shell; paths come from the resolved target
            [git, "-C", str(self.content_root), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def _git_ok(self, *args: str) -> str:
        done = self._git(*args)
        if done.returncode != 0:
            raise ConfigurationError(
                f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout.strip()

    def _require_work_tree(self) -> None:
        if self._git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
            raise ConfigurationError(f"git_commit is set but {self.content_root} is not in a git work tree")

    def _commit(self, path: Path, key: str) -> str:
        relative = path.relative_to(self.content_root).as_posix()
        self._git_ok("add", "--", relative)
        staged = self._git("diff", "--cached", "--quiet", "--", relative)
        if staged.returncode not in {0, 1}:
            raise ConfigurationError(f"git diff failed: {staged.stderr.strip()}")
        if staged.returncode == 1:
            message = f"sitesteward: publish {relative}\n\nIdempotency-Key: {key}\n"
            self._git_ok("commit", "--quiet", "-m", message, "--", relative)
        return self._git_ok("log", "-1", "--format=%H", "--", relative)


# ----------------------------------------------------------------------------------- edit logic


def edit_contained(edit: Edit, content: str) -> bool:
    """Tell whether ``content`` (a whole Markdown file) already holds the result of ``edit``."""
    _prefix, document = _split(content)
    if edit.kind == "replace_text":
        return _replacement_done(edit, document.body)
    if edit.kind == "add_link":
        hrefs = added_hrefs(edit)
        return bool(hrefs) and all(_links_to(document.body, href) for href in hrefs)
    return _meta_value(document, _META_KEYS[edit.kind]) == edit.new


def apply_edits(content: str, edits: Sequence[Edit]) -> str:
    """Apply ``edits`` in order to a whole Markdown file and return the new text.

    Pure: raises before anything is written, so a failing edit leaves the file untouched.

    Raises:
        EditConflict: an edit's old text or value is gone and its new one is not there.
        PolicyViolation: an edit is malformed or unsafe (empty old text, a dangerous link).
    """
    prefix, document = _split(content)
    body, meta, meta_changed = document.body, dict(document.meta), False
    for edit in edits:
        if edit.kind == "replace_text":
            body = _replace_text(edit, body)
        elif edit.kind == "add_link":
            body = _add_link(edit, body)
        else:
            key = _META_KEYS[edit.kind]
            current = _meta_value(Document(meta, body), key)
            if current == edit.new:
                continue
            if current != edit.old:
                raise EditConflict(
                    f"{edit.kind}: front matter {key} is {current!r}, expected {edit.old!r} "
                    "(the page changed since the draft)"
                )
            meta[key] = edit.new
            if prefix is not None:
                prefix = _set_front_matter_line(prefix, key, edit.new)
            meta_changed = True
    if prefix is not None and (not meta_changed or parse_document(prefix + body).meta == meta):
        return prefix + body  # only the edited lines changed: small, reviewable diffs in git
    return dump_document(Document(meta, body))


def _set_front_matter_line(prefix: str | None, key: str, value: str) -> str | None:
    """The front matter with one top-level ``key: value`` line set, everything else byte-exact.

    Returns None when that is not possible (a multi-line value, no front matter): the caller then
    re-serialises the whole front matter instead.
    """
    if prefix is None or not prefix.startswith("---"):
        return None
    line = yaml.safe_dump({key: value}, allow_unicode=True, width=10_000, sort_keys=False).rstrip("\n")
    if "\n" in line:
        return None
    pattern = re.compile(rf"^{re.escape(key)}:[^\n]*$", re.MULTILINE)
    matches = list(pattern.finditer(prefix))
    if len(matches) == 1:
        match = matches[0]
        following = prefix[match.end() + 1 : match.end() + 3]
        if following.startswith((" ", "\t", "-")):  # the value continues on the next lines
            return None
        return prefix[: match.start()] + line + prefix[match.end() :]
    if matches:
        return None
    closing = prefix.rfind("\n---")
    if closing < 0:
        return None
    return prefix[: closing + 1] + line + prefix[closing:]


def _split(content: str) -> tuple[str | None, Document]:
    """The document and the raw text before its body, so body-only edits keep front matter byte-exact."""
    document = parse_document(content)
    if content.endswith(document.body):
        return content[: len(content) - len(document.body)], document
    return None, document


def _meta_value(document: Document, key: str) -> str:
    value = document.meta.get(key)
    return "" if value is None else str(value)


def _replacement_done(edit: Edit, body: str) -> bool:
    if not edit.new or edit.new in edit.old:
        # Removing text, or shrinking it ("[text](dead-link)" -> "text"): done once the old text is gone.
        return edit.old not in body
    if edit.new not in body:
        return False
    # "new" may contain "old" ("Python" -> "Python 3"): only an old text outside every new one is pending.
    return all(edit.old not in segment for segment in body.split(edit.new))


def _replace_text(edit: Edit, body: str) -> str:
    if not edit.old:
        raise PolicyViolation("replace_text needs the exact old text (empty old text is not an edit)")
    if _replacement_done(edit, body):
        return body
    if edit.old not in body:
        raise EditConflict(
            f"replace_text: {edit.old[:80]!r} is not in the page and the new text is not either"
        )
    if not edit.new or edit.new in edit.old:
        return body.replace(edit.old, edit.new)
    return edit.new.join(segment.replace(edit.old, edit.new) for segment in body.split(edit.new))


_MD_HREF = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")


def _check_href(href: str) -> None:
    scheme = urlsplit(href).scheme.lower()
    if not href or _UNSAFE_HREF.search(href) or scheme not in _ALLOWED_SCHEMES:
        raise PolicyViolation(f"add_link refuses the link target {href!r}")


def _links_to(body: str, href: str) -> bool:
    escaped = re.escape(href)
    patterns = (
        rf"\]\(\s*<?{escaped}>?(\s+[\"'(][^)]*)?\)",  # [text](href) / [text](<href> "title")
        rf"<{escaped}>",  # autolink
        rf"^\s*\[[^\]]+\]:\s*<?{escaped}>?(\s|$)",  # reference definition
        rf"href\s*=\s*[\"']{escaped}[\"']",  # raw HTML
    )
    return any(re.search(pattern, body, flags=re.MULTILINE) for pattern in patterns)


def added_hrefs(edit: Edit) -> list[str]:
    """The link targets ``edit.new`` has that ``edit.old`` had not (what an ``add_link`` adds)."""
    before = set(_MD_HREF.findall(edit.old))
    return [href for href in _MD_HREF.findall(edit.new) if href not in before]


def _add_link(edit: Edit, body: str) -> str:
    hrefs = added_hrefs(edit)
    if not hrefs:
        raise PolicyViolation(f"add_link adds no link: {edit.new[:80]!r}")
    for href in hrefs:
        _check_href(href)
    if all(_links_to(body, href) for href in hrefs):
        return body
    return _replace_text(edit, body)


def _fsync_directory(directory: Path) -> None:
    # Make the rename itself durable; not every platform lets a directory be opened.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

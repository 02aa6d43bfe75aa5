"""Rebuild and verify the real-prose development passages from their sources.

Every record in ``data/dev/passages.jsonl`` names a public-domain text kept in a
git repository (``repo``), the ``commit`` and ``path`` of the file, and the byte
range ``start``/``end`` of the passage in that file's raw bytes. This script
re-extracts those bytes with ``git show commit:path``, checks their SHA-256,
decodes them with the record's ``encoding`` (turning CRLF line ends into LF) and
then either verifies that the stored ``text`` matches (``--check``, the default)
or rewrites ``passages.jsonl`` with freshly extracted text (``--write``).

Records in ``data/dev/works/*.jsonl`` carry the same provenance fields but point
at a text file through ``file`` instead of holding ``text``; for those the file's
content must equal the decoded slice. They are verified in both modes and never
rewritten, and so are the background prose records (``data/background/sources.jsonl``).
No record may come from a reserved title, and no text may contain one, even as ordinary
words (``--reserved``). Work records without repository provenance (hand-written works,
``"source": "written"``) only need their ``file`` to exist.

Repositories are looked up under ``--mirror-root`` (default ``/work/.mirror``),
where a repository ``owner/name`` is expected at ``owner+name/repo`` (either a
bare git directory or a work tree with ``.git``), or given one by one with
``--git-dir owner/name=PATH``.

Example:
    python data/dev/build.py --check
    python data/dev/build.py --mirror-root /work/.mirror --write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEV_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEV_DIR.parent.parent
DEFAULT_PASSAGES = DEV_DIR / "passages.jsonl"
DEFAULT_WORKS = DEV_DIR / "works"
DEFAULT_BACKGROUND = REPO_ROOT / "data" / "background" / "sources.jsonl"
DEFAULT_MIRROR = Path("/work/.mirror")
DEFAULT_RESERVED = REPO_ROOT.parent / "shared" / "reserved-titles.txt"
"""Titles kept for an independent check: no record may come from them (skipped if absent)."""

TAGS = (
    "hurt_comfort",
    "fake_death",
    "reunion",
    "soulmates",
    "mates",
    "alpha_beta_omega",
    "angst",
    "fluff",
    "first_kiss",
    "love_confession",
)
VALUES = frozenset({"yes", "no", "unknown"})
PROVENANCE = ("repo", "commit", "path", "start", "end", "sha256", "encoding")


class BuildError(Exception):
    """A record whose source could not be found or does not match."""


@dataclass
class Sources:
    """Finds git directories and caches the files read from them.

    Attributes:
        mirror_root: Folder holding fetched repositories as ``owner+name``.
        git_dirs: Explicit ``owner/name`` to git directory mapping, tried first.
        cache: File bytes already read, keyed by git directory, commit and path.
    """

    mirror_root: Path
    git_dirs: dict[str, Path] = field(default_factory=dict)
    cache: dict[tuple[str, str, str], bytes] = field(default_factory=dict)

    def git_dir(self, repo: str) -> Path:
        """Return the git directory that holds ``repo``.

        Args:
            repo: Repository name as ``owner/name``.

        Returns:
            A path usable as ``git --git-dir``.

        Raises:
            BuildError: If no git directory is found for the repository.
        """
        if repo in self.git_dirs:
            candidates = [self.git_dirs[repo]]
        else:
            base = self.mirror_root / repo.replace("/", "+")
            candidates = [base / "repo" / ".git", base / "repo", base / ".git", base]
        for path in candidates:
            if (path / "HEAD").is_file() and (path / "objects").is_dir():
                return path
        raise BuildError(f"no git directory for {repo} (tried {', '.join(map(str, candidates))})")

    def read(self, repo: str, commit: str, path: str) -> bytes:
        """Return the raw bytes of ``path`` at ``commit`` in ``repo``.

        Args:
            repo: Repository name as ``owner/name``.
            commit: Full commit hash.
            path: File path inside the repository.

        Returns:
            The file's bytes exactly as stored in git.

        Raises:
            BuildError: If git cannot show the file.
        """
        gdir = self.git_dir(repo)
        key = (str(gdir), commit, path)
        if key not in self.cache:
            proc = subprocess.run(
                ["git", "--git-dir", str(gdir), "show", f"{commit}:{path}"],
                capture_output=True,
                check=False,
            )
            if proc.returncode != 0:
                message = proc.stderr.decode("utf-8", "replace").strip()
                raise BuildError(f"git show {commit}:{path} in {repo} failed: {message}")
            self.cache[key] = proc.stdout
        return self.cache[key]


def extract(record: dict, sources: Sources) -> str:
    """Extract, check and decode the passage a record points at.

    Args:
        record: A passage or work record with the provenance fields.
        sources: Where to read repositories from.

    Returns:
        The decoded text with CRLF line ends replaced by LF.

    Raises:
        BuildError: If a field is missing, the range is invalid, or the hash or
            decoding does not match.
    """
    missing = [name for name in PROVENANCE if name not in record]
    if missing:
        raise BuildError(f"missing fields {missing}")
    raw = sources.read(record["repo"], record["commit"], record["path"])
    start, end = record["start"], record["end"]
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(raw)):
        raise BuildError(f"bad byte range {start}:{end} for a file of {len(raw)} bytes")
    chunk = raw[start:end]
    digest = hashlib.sha256(chunk).hexdigest()
    if digest != record["sha256"]:
        raise BuildError(f"sha256 mismatch: stored {record['sha256']}, source {digest}")
    try:
        text = chunk.decode(record["encoding"])
    except (LookupError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot decode with {record['encoding']}: {exc}") from exc
    return text.replace("\r\n", "\n")


def check_judgments(record: dict) -> None:
    """Check that a passage record judges exactly the ten required tags.

    Args:
        record: A passage record.

    Raises:
        BuildError: If a tag is missing or extra, or a value is not allowed.
    """
    judgments = record.get("judgments")
    if not isinstance(judgments, dict) or set(judgments) != set(TAGS):
        raise BuildError(f"judgments must cover exactly {list(TAGS)}")
    bad = {tag: value for tag, value in judgments.items() if value not in VALUES}
    if bad:
        raise BuildError(f"judgment values must be yes/no/unknown, got {bad}")


def title_words(title: str, repo_name: bool = False) -> tuple[str, ...]:
    """A title's lower-case words, apostrophes and a leading article dropped.

    Args:
        title: A title ("The Miller's Daughter (Anon)": the author in brackets is
            dropped) or, with ``repo_name``, a repository name
            ("GITenberg/The-Miller-s-Daughter_1234", whose "-s-" is an apostrophe and
            "_1234" an ebook number).
        repo_name: Read ``title`` as a repository name.

    Returns:
        The words, e.g. ``("millers", "daughter")``.
    """
    text = title.lower().replace("\u2019", "").replace("'", "")
    if repo_name:
        text = re.sub(r"_\d+$", "", text.rpartition("/")[2])
        text = re.sub(r"-s(?=[-_]|$)", "s", text)
    else:
        text = re.sub(r"\([^)]*\)", " ", text)
    words = tuple(re.findall(r"[a-z0-9]+", text))
    return words[1:] if words[:1] in (("the",), ("a",), ("an",)) else words


def reserved_lines(path: Path) -> list[str]:
    """The reserved titles as listed (one per line, ``#`` comments), or none if absent."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def read_reserved(path: Path) -> list[tuple[str, ...]]:
    """The reserved titles' words (:func:`title_words`), or none if the list is absent."""
    return [title_words(line) for line in reserved_lines(path)]


def reserved_match(record: dict, reserved: Sequence[tuple[str, ...]]) -> str | None:
    """The reserved title a record's book is (or contains), if any.

    The repository name and the ``book``/``title``/``style`` fields are each compared: a
    reserved title matches when the name begins with its words, so editions ("<title>,
    Volume II", "<title>, Illustrated") match too, while another book whose subtitle
    happens to repeat a reserved title does not.
    """
    names = [title_words(str(record.get("repo", "")), repo_name=True)]
    names += [title_words(str(record[k])) for k in ("book", "title", "style") if k in record]
    for words in names:
        for title in reserved:
            if title and words[: len(title)] == title:
                return " ".join(title)
    return None


Phrases = Sequence[tuple[str, "re.Pattern[str]"]]
"""Reserved titles as phrases to look for in text: ``(title, pattern)`` pairs."""


def read_reserved_phrases(path: Path) -> list[tuple[str, re.Pattern[str]]]:
    """Each reserved title as a phrase that text may not contain, or none if absent.

    A title's words, its leading article kept and the author in brackets dropped, are
    joined by runs of non-word characters and matched case-insensitively as whole words: a
    one-word title such as "Tact (Anon)" finds "tact" in any sentence, and "East and West
    (Anon)" finds "East, and west" across a line break. Text that holds a reserved title,
    even as ordinary words, is refused, so nothing in ``data/`` can be mistaken for the
    reserved works.
    """
    phrases = []
    for line in reserved_lines(path):
        words = re.findall(r"[a-z0-9]+", re.sub(r"\([^)]*\)", " ", line.lower()))
        pattern = r"(?<![a-z0-9])" + r"\W+".join(words) + r"(?![a-z0-9])"
        phrases.append((line, re.compile(pattern, re.IGNORECASE)))
    return phrases


def check_mentions(text: str, phrases: Phrases) -> None:
    """Refuse text that contains a reserved title as a phrase (:func:`read_reserved_phrases`).

    Raises:
        BuildError: Naming the first title found and where.
    """
    for title, pattern in phrases:
        found = pattern.search(text)
        if found:
            context = " ".join(text[max(0, found.start() - 30) : found.end() + 30].split())
            raise BuildError(f"text contains the reserved title {title!r}: ...{context}...")


def check_reserved(record: dict, reserved: Sequence[tuple[str, ...]]) -> None:
    """Refuse a record taken from a reserved title.

    Raises:
        BuildError: If the record's book is a reserved title.
    """
    title = reserved_match(record, reserved)
    if title is not None:
        raise BuildError(f"{record.get('repo')} is a reserved title ({title})")


def read_jsonl(path: Path) -> list[dict]:
    """Read one JSON object per non-empty line.

    Args:
        path: A ``.jsonl`` file.

    Returns:
        The parsed records in file order.
    """
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def resolve_work_file(name: str, works_dir: Path) -> Path:
    """Find the text file a work record names.

    Args:
        name: The record's ``file`` value: absolute, relative to the repository
            root, or relative to the works folder.
        works_dir: The ``data/dev/works`` folder.

    Returns:
        The first existing candidate, or the works-folder candidate if none exists.
    """
    path = Path(name)
    if path.is_absolute():
        return path
    for candidate in (REPO_ROOT / path, works_dir / path):
        if candidate.is_file():
            return candidate
    return works_dir / path


def process_passages(
    path: Path,
    sources: Sources,
    write: bool,
    reserved: Sequence[tuple[str, ...]] = (),
    phrases: Phrases = (),
) -> list[str]:
    """Verify (and optionally rewrite) the passage records.

    Args:
        path: The ``passages.jsonl`` file.
        sources: Where to read repositories from.
        write: Rewrite the file with freshly extracted text instead of comparing.
        reserved: Reserved titles' words (:func:`read_reserved`).
        phrases: Reserved titles as phrases the text may not hold
            (:func:`read_reserved_phrases`).

    Returns:
        One message per failed record; empty when everything matched.
    """
    records = read_jsonl(path)
    errors: list[str] = []
    seen: set[str] = set()
    for number, record in enumerate(records, 1):
        label = f"{path.name}:{number} ({record.get('id', '?')})"
        try:
            if record.get("id") in seen:
                raise BuildError("duplicate id")
            seen.add(record.get("id", ""))
            check_reserved(record, reserved)
            check_judgments(record)
            text = extract(record, sources)
            check_mentions(text, phrases)
            if write:
                record["text"] = text
            elif record.get("text") != text:
                raise BuildError("stored text differs from the source slice")
        except BuildError as exc:
            errors.append(f"{label}: {exc}")
    if write and not errors:
        with path.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    note = " (rewritten)" if write and not errors else ""
    print(f"{path}: {len(records)} records, {len(errors)} failed{note}")
    return errors


def process_training(
    paths: Iterable[Path],
    sources: Sources,
    reserved: Sequence[tuple[str, ...]] = (),
    phrases: Phrases = (),
) -> list[str]:
    """Verify public-domain training passages (``data/exemplars/pd_*.jsonl``).

    They carry the same provenance as dev passages, with ``tags``/``near_miss`` instead of
    ``judgments``; the stored ``text`` must be the source slice, no two passages may
    overlap, and no book may also be a dev book or a reserved title.

    Args:
        paths: The exemplar files with provenance.
        sources: Where to read repositories from.
        reserved: Reserved titles' words (:func:`read_reserved`).
        phrases: Reserved titles as phrases the text may not hold.

    Returns:
        One message per failed record; empty when everything matched.
    """
    dev_repos = {r.get("repo") for r in read_jsonl(DEFAULT_PASSAGES)}
    for works in DEFAULT_WORKS.glob("*.jsonl"):
        dev_repos |= {r.get("repo") for r in read_jsonl(works)}
    errors: list[str] = []
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for path in paths:
        records = read_jsonl(path)
        failed = 0
        for number, record in enumerate(records, 1):
            label = f"{path.name}:{number} ({record.get('id', '?')})"
            try:
                if record.get("repo") in dev_repos:
                    raise BuildError(f"{record.get('repo')} is a dev book")
                check_reserved(record, reserved)
                if set(record.get("tags", [])) & set(record.get("near_miss", [])):
                    raise BuildError("a tag is both shown and a near miss")
                if record.get("text") != extract(record, sources):
                    raise BuildError("stored text differs from the source slice")
                check_mentions(record["text"], phrases)
                start, end = record["start"], record["end"]
                for other_start, other_end, other in spans.get(record["repo"], []):
                    if start < other_end and other_start < end:
                        raise BuildError(f"overlaps {other}")
                spans.setdefault(record["repo"], []).append((start, end, str(record["id"])))
            except BuildError as exc:
                failed += 1
                errors.append(f"{label}: {exc}")
        print(f"{path}: {len(records)} records, {failed} failed")
    return errors


def process_works(
    files: Iterable[Path],
    works_dir: Path,
    sources: Sources,
    reserved: Sequence[tuple[str, ...]] = (),
    phrases: Phrases = (),
) -> list[str]:
    """Verify work records whose ``file`` must equal the decoded slice.

    Args:
        files: The ``works/*.jsonl`` files.
        works_dir: Folder used to resolve relative ``file`` values.
        sources: Where to read repositories from.
        reserved: Reserved titles' words (:func:`read_reserved`).
        phrases: Reserved titles as phrases the text may not hold (hand-written works
            too).

    Returns:
        One message per failed record; empty when everything matched.
    """
    errors: list[str] = []
    for path in files:
        records = read_jsonl(path)
        failed = 0
        written = 0
        for number, record in enumerate(records, 1):
            label = f"{path.name}:{number} ({record.get('id', record.get('file', '?'))})"
            try:
                if "file" not in record:
                    raise BuildError("work record has no 'file'")
                target = resolve_work_file(record["file"], works_dir)
                if not target.is_file():
                    raise BuildError(f"file {target} not found")
                check_reserved(record, reserved)
                stored = target.read_text(encoding="utf-8")
                check_mentions(stored, phrases)
                if "repo" not in record and record.get("source") == "written":
                    written += 1
                    continue
                text = extract(record, sources)
                if stored != text:
                    raise BuildError(f"content of {target} differs from the source slice")
            except BuildError as exc:
                failed += 1
                errors.append(f"{label}: {exc}")
        extra = f", {written} hand-written (file only)" if written else ""
        print(f"{path}: {len(records)} work records, {failed} failed{extra}")
    return errors


def parse_git_dirs(values: list[str]) -> dict[str, Path]:
    """Parse ``owner/name=PATH`` options.

    Args:
        values: The raw ``--git-dir`` values.

    Returns:
        Mapping from repository name to git directory.

    Raises:
        SystemExit: If a value has no ``=``.
    """
    mapping: dict[str, Path] = {}
    for value in values:
        repo, sep, path = value.partition("=")
        if not sep:
            raise SystemExit(f"--git-dir expects owner/name=PATH, got {value!r}")
        mapping[repo] = Path(path)
    return mapping


def main(argv: list[str] | None = None) -> int:
    """Run the checker or rewriter.

    Args:
        argv: Command-line arguments; ``sys.argv[1:]`` when None.

    Returns:
        0 when every record matched its source, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify stored text (default)")
    mode.add_argument(
        "--write", action="store_true", help="rewrite passages.jsonl from the sources"
    )
    parser.add_argument(
        "--mirror-root", type=Path, default=DEFAULT_MIRROR, help="folder of fetched repositories"
    )
    parser.add_argument(
        "--git-dir",
        action="append",
        default=[],
        metavar="OWNER/NAME=PATH",
        help="git directory for one repository",
    )
    parser.add_argument("--passages", type=Path, default=DEFAULT_PASSAGES, help="passages file")
    parser.add_argument(
        "--works-dir", type=Path, default=DEFAULT_WORKS, help="folder of work records"
    )
    parser.add_argument(
        "--background",
        type=Path,
        default=DEFAULT_BACKGROUND,
        help="background prose records (default: data/background/sources.jsonl)",
    )
    parser.add_argument(
        "--training",
        type=Path,
        nargs="*",
        default=sorted(
            [
                *(REPO_ROOT / "data" / "exemplars").glob("pd_*.jsonl"),
                *(REPO_ROOT / "data" / "candidates").glob("pd_*.jsonl"),
            ]
        ),
        help="public-domain training passage files to verify "
        "(default: data/exemplars/pd_* and data/candidates/pd_*)",
    )
    parser.add_argument(
        "--reserved",
        type=Path,
        default=DEFAULT_RESERVED,
        help="reserved titles, one per line; no record may come from them "
        "(default: ../shared/reserved-titles.txt beside the repository; skipped if absent)",
    )
    args = parser.parse_args(argv)

    reserved = read_reserved(args.reserved)
    phrases = read_reserved_phrases(args.reserved)
    print(
        f"{args.reserved}: {len(reserved)} reserved titles"
        if reserved
        else f"{args.reserved}: not found, reserved titles not checked"
    )
    sources = Sources(mirror_root=args.mirror_root, git_dirs=parse_git_dirs(args.git_dir))
    errors: list[str] = []
    if args.passages.is_file():
        errors += process_passages(args.passages, sources, args.write, reserved, phrases)
    else:
        errors.append(f"{args.passages}: not found")
    if args.works_dir.is_dir():
        works = sorted(args.works_dir.glob("*.jsonl"))
        errors += process_works(works, args.works_dir, sources, reserved, phrases)
    if args.background.is_file():
        errors += process_works([args.background], args.works_dir, sources, reserved, phrases)
    errors += process_training(args.training, sources, reserved, phrases)
    for message in errors:
        print(f"ERROR {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

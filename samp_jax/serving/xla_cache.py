"""JAX's persistent compilation cache, with reads that survive a cut entry, and its per-entry
errors said once.

JAX writes a cache entry in place (`LRUCache.put`: `write_bytes`), so a process killed while
writing one leaves it cut short. Every later process then fails to decompress it, warns
("Error reading persistent compilation cache entry"), compiles, and never replaces it: `put`
skips a key that exists. `checked_reads()` makes the cache's `get` decompress an entry before
handing it over; one that does not decompress is removed and reported missing, so the
executable is compiled and written anew, once, without a warning.

It replaces `jax._src.compilation_cache.get_file_cache` (private: this is tied to the pinned
jax; `tests/samp_jax/serving/test_xla_cache.py` checks that it still takes effect).

A cache whose disk is full (or out of inodes) fails at every entry: JAX warns once per
executable read or written ("Error writing persistent compilation cache entry for
'jit_stage': OSError: ..."), burying the warnings that matter. `cache_errors_once(show)` says
it in one line per reason.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Callable

import jax

_INSTALLED = False


def checked_reads() -> bool:
    """Installs the checked `get` for every file cache JAX opens from now on (call before it
    opens one: `enable_compilation_cache` does, before resetting the cache). Returns whether
    it is in place (False where this jax has no such hook)."""
    global _INSTALLED
    if _INSTALLED:
        return True
    try:
        from jax._src import compilation_cache, lru_cache
        opener, base, decompress = (compilation_cache.get_file_cache, lru_cache.LRUCache,
                                    compilation_cache.decompress_executable)
        suffix = lru_cache._CACHE_SUFFIX
    except (ImportError, AttributeError):
        return False

    class CheckedFileCache(base):
        """JAX's file cache; an entry that does not decompress is removed and missing."""

        def get(self, key: str) -> bytes | None:
            value = super().get(key)
            if value is None or whole(value):
                return value
            self._remove_if_cut(key)
            return None

        def _remove_if_cut(self, key: str) -> None:
            """Removes the entry if it is still cut, under JAX's lock where it keeps one (another
            process may have rewritten it meanwhile)."""
            path = Path(self.path) / f"{key}{suffix}"
            locked = self.eviction_enabled
            try:
                if locked:
                    self.lock.acquire(timeout=self.lock_timeout_secs)
                try:
                    if not whole(path.read_bytes()):
                        path.unlink()
                finally:
                    if locked:
                        self.lock.release()
            except Exception:  # noqa: BLE001  gone, locked elsewhere, read-only: compile anyway
                pass

    def whole(value: bytes) -> bool:
        try:
            decompress(value)
        except Exception:  # noqa: BLE001  zlib.error, zstd's errors: a cut entry
            return False
        return True

    def open_checked(path: str):
        opened = opener(path)
        if opened is None or type(opened[0]) is not base:  # a verification wrapper: as is
            return opened
        cache = opened[0]
        cache.__class__ = CheckedFileCache  # the same object, its `get` checked
        return cache, opened[1]

    compilation_cache.get_file_cache = open_checked
    _INSTALLED = True
    return True


# JAX's warning for an entry it could not read or write (`jax._src.compiler._cache_read`,
# `_cache_write`, `_is_executable_in_cache`)
_ENTRY_ERROR = re.compile(r"Error (reading|writing) persistent compilation cache entry for "
                          r"'[^']*': (.*)", re.DOTALL)
_OS_ERROR = re.compile(r"\[Errno (\d+)\] ([^:']*)")
# errors of a read that writes (the entry's access time, for the eviction of old entries)
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def cache_error_line(message: str) -> tuple[str, str] | None:
    """`(reason, line)` of JAX's warning of a persistent compilation cache entry it could not
    read or write: "the compilation cache at FOLDER could not be written (No space left on
    device); compiling goes on without it", one line per reason; None for another warning."""
    found = _ENTRY_ERROR.fullmatch(str(message).strip())
    if found is None:
        return None
    kind, error = found.groups()
    os_error = _OS_ERROR.search(error)
    reason = os_error.group(2).strip() if os_error else " ".join(error.split())[:200]
    written = kind == "writing" or (os_error and int(os_error.group(1)) in _WRITE_ERRNOS)
    folder = jax.config.jax_compilation_cache_dir or "(its folder)"
    return reason, (f"the compilation cache at {folder} could not be "
                    f"{'written' if written else 'read'} ({reason}); compiling goes on without it")


def as_kept(message: str) -> str:
    """How a report keeps a warning (`samp_jax.core.kept_warnings`): a cache entry's error as
    the one line `cache_errors_once` shows for its reason, another as it is."""
    entry = cache_error_line(message)
    return message if entry is None else entry[1]


def cache_errors_once(show: Callable) -> Callable:
    """A `warnings.showwarning` that hands every warning to `show`, except JAX's warnings of
    a persistent compilation cache entry it could not read or write: the first of each reason
    becomes one warning (`cache_error_line`), and the others are dropped."""
    said: set[str] = set()

    def showwarning(message, category, filename, lineno, file=None, line=None):
        entry = cache_error_line(str(message))
        if entry is None:
            return show(message, category, filename, lineno, file, line)
        reason, text = entry
        if reason in said:
            return None
        said.add(reason)
        return show(UserWarning(text), category, filename, lineno, file, line)
    return showwarning

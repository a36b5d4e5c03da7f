"""Files hubtune writes for the user (exports, metrics CSVs, saved configs): never a
silent overwrite, never inside hubtune's own data folder, one sentence on failure.

Torch-free and textual-free: the CLI and the TUI both use it. A file is written
to a temporary sibling and moved into place, so a failure half-way (a full disk,
a killed process) leaves no half-written file and the old one, if any, intact.
Without `force` the move is a hard link, which fails if the name was taken in
the meantime instead of replacing what another process just wrote. What is written
gets the permissions the user's umask gives any new file (the temporary names are
created private, as they must be, and opened up before the move), and `--force`
never replaces a file the same command reads (`refuse_overwriting_input`).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.core.errors import HubtuneError


class OutputError(HubtuneError):
    """A target the user named cannot, or must not, be written."""


def _reason(exc: OSError) -> str:
    return {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "a read-only file system", errno.ENOSPC: "the disk is full",
            errno.ENOTDIR: "a part of the path is a file, not a folder",
            errno.ENOENT: "a file cannot be created there",
            errno.EDQUOT: "the disk quota is used up"}.get(exc.errno, exc.strerror or str(exc))


def _check_outside(path: Path, protected: Path | None) -> None:
    if protected is None:
        return
    home = Path(protected).expanduser().resolve()
    if path == home or home in path.parents:
        raise OutputError(f"{path} is inside hubtune's data folder ({home}), which holds the "
                          "run database and run files; write it somewhere else.")


def _check_parent(path: Path) -> None:
    parent = path.parent
    if parent.is_dir():
        return
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"Cannot write {path}: {ancestor} is a file, not a folder.")
            break
    raise OutputError(f"Cannot write {path}: the folder {parent} does not exist; create it "
                      "first.")


def check_new_file(target: str | Path, *, force: bool = False,
                   protected: Path | None = None) -> Path:
    """The absolute path `target` names, if hubtune may write a file there."""
    path = Path(target).expanduser().resolve()
    _check_outside(path, protected)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name.")
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputError(f"{path} already exists; pass --force to replace it.")
        if not path.is_file():
            raise OutputError(f"{path} is not a regular file; give another name.")
    _check_parent(path)
    return path


def write_file(target: str | Path, write: Callable[[Path], None], *, force: bool = False,
               protected: Path | None = None) -> Path:
    """Write a file with `write(tmp_path)`, then move it to `target` in one step."""
    path = check_new_file(target, force=force, protected=protected)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"Cannot write {path} ({_reason(exc)}).") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            _link_without_replacing(tmp, path)
    except OSError as exc:
        raise OutputError(f"Cannot write {path} ({_reason(exc)}).") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _link_without_replacing(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(f"{path} already exists; pass --force to replace it.") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: an exclusive create keeps the promise.
        with open(path, "xb") as out, open(tmp, "rb") as src:
            shutil.copyfileobj(src, out)


def write_text(target: str | Path, text: str, *, force: bool = False,
               protected: Path | None = None) -> Path:
    return write_file(target, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                      force=force, protected=protected)


def check_new_folder(target: str | Path, *, force: bool = False,
                     protected: Path | None = None) -> Path:
    """The absolute folder `target` names, if hubtune may fill it: new, empty, or
    (with `force`) one whose files of the same names may be replaced."""
    path = Path(target).expanduser().resolve()
    _check_outside(path, protected)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; give a new or empty folder.")
    if path.is_dir():
        try:
            empty = not any(path.iterdir())
        except OSError as exc:
            raise OutputError(f"Cannot read the folder {path} ({_reason(exc)}).") from None
        if not empty and not force:
            raise OutputError(f"{path} is not empty; give a new or empty folder, or pass "
                              "--force to replace the files of the same names in it.")
    else:
        _check_parent(path)
    return path


def fill_folder(target: str | Path, fill: Callable[[Path], None], *, force: bool = False,
                protected: Path | None = None) -> Path:
    """Build a folder's files with `fill(tmp_folder)` beside `target`, then move them in.

    Files already in `target` under other names are left alone; with `force`, files
    of the same names are replaced, each in one step.
    """
    path = check_new_folder(target, force=force, protected=protected)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"Cannot write to {path.parent} ({_reason(exc)}).") from None
    try:
        fill(tmp)
        _follow_umask(tmp)
        if not path.exists():
            os.rename(tmp, path)
            return path
        for item in tmp.iterdir():
            os.replace(item, path / item.name)
    except OSError as exc:
        raise OutputError(f"Cannot write {path} ({_reason(exc)}).") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _follow_umask(root: Path) -> None:
    """Give a built folder and everything in it the modes the umask gives new files:
    mkdtemp makes the folder 0700, and some writers (safetensors) make files 0600."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(folder) / name, 0o777 & ~mask)
        for name in files:
            item = Path(folder) / name
            if item.is_symlink():
                continue
            runnable = item.stat().st_mode & 0o111
            os.chmod(item, (0o777 if runnable else 0o666) & ~mask)


def current_umask() -> int:
    """This process's umask, read without changing it where Linux says it (os.umask can
    only be read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def refuse_overwriting_input(target: str | Path, inputs, *, folder: bool = False) -> None:
    """Refuse, whatever `--force` says, a `target` that would replace something the same
    command reads: `inputs` are (path, what it is) pairs, e.g. (data_file, "the file
    --file reads"). A file target must not be an input (by name, link or hard link); a
    folder target (`folder`) must not be an input folder, nor hold an input directly
    (its name could be among those written). A symlink counts as what it points to.
    """
    path = Path(target).expanduser().resolve()
    for item, what in inputs:
        if item is None:
            continue
        source = Path(item).expanduser().resolve()
        same = source == path or _same_file(source, path)
        holds = folder and source.parent == path
        if same or holds:
            shown = "is" if same else "holds"
            raise OutputError(f"{path} {shown} {what}, which this command reads; write the "
                              "output somewhere else (--force never replaces an input).")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing: not the same file
        return False

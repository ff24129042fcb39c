"""One filesystem layer for every location the project reads or writes.

A location is a local or mounted path (``/data/shards``, ``outputs/runs``) or a URI that pyarrow
resolves (``s3://bucket/x``, ``gs://bucket/x``, ``hdfs://...``), exactly as Ray's own storage
layer does, so the same string works for Ray Data, Ray Train's ``storage_path`` and this
module. S3 endpoints and credentials come the standard way (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, an instance profile, ...).

Local paths are made absolute (Ray resolves relative ones inside a job's working directory).
Writes are atomic: a local file is written under a temporary name and renamed; an object store
puts a whole object at once.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs


def is_uri(location: str | Path) -> bool:
    """True for ``scheme://...`` other than ``file://`` (which is a local path)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def normalise(location: str | Path) -> str:
    """A URI unchanged (without a trailing slash), or an absolute local path.

    Symlinks are kept (another node may mount the same storage through another link target).
    URIs with a query or fragment are refused: every derived location is built by appending
    to the path, and endpoints belong in the environment (``AWS_ENDPOINT_URL``).
    """
    text = str(location)
    if is_uri(text):
        parts = urlsplit(text)
        if parts.query or parts.fragment:
            raise ValueError(
                f"{text}: a storage URI cannot carry '?' or '#'; configure the endpoint with "
                "AWS_ENDPOINT_URL (or the store's own variables) instead"
            )
        return text.rstrip("/")
    if text.startswith("file://"):
        text = unquote(urlsplit(text).path)
    return os.path.abspath(os.path.expanduser(text))


def join(location: str | Path, *parts: str) -> str:
    """``location/part/...`` for paths and URIs alike."""
    text = str(location)
    if not is_uri(text):
        return str(Path(text, *parts))
    return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])


def name(location: str | Path) -> str:
    """The last component: ``s3://b/runs/x/best`` -> ``best``."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def parent(location: str | Path) -> str:
    text = str(location).rstrip("/")
    return text.rsplit("/", 1)[0] if is_uri(text) else str(Path(text).parent)


@functools.lru_cache(maxsize=32)
def _root(scheme: str, netloc: str) -> tuple[pafs.FileSystem, str]:
    """One filesystem per bucket/host (resolving an S3 bucket's region costs a request)."""
    return pafs.FileSystem.from_uri(f"{scheme}://{netloc}/")


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """``(pyarrow filesystem, path inside it)`` for a location."""
    text = str(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), normalise(text)
    parts = urlsplit(normalise(text))
    fs, root = _root(parts.scheme, parts.netloc)
    rest = unquote(parts.path).strip("/")  # as pyarrow (and so Ray) decodes it
    prefix = root.rstrip("/")
    return fs, (f"{prefix}/{rest}" if rest else root)


def local_path(location: str | Path) -> Path | None:
    """The local path of a location, or None for a URI."""
    return None if is_uri(location) else Path(normalise(location))


def _info(location: str | Path) -> pafs.FileInfo:
    fs, path = filesystem(location)
    return fs.get_file_info(path)


def is_file(location: str | Path) -> bool:
    return _info(location).type == pafs.FileType.File


def is_dir(location: str | Path) -> bool:
    """A folder, or (on an object store) a prefix with objects under it."""
    return _info(location).type == pafs.FileType.Directory


def exists(location: str | Path) -> bool:
    return _info(location).type != pafs.FileType.NotFound


def makedirs(location: str | Path) -> None:
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)


def read_bytes(location: str | Path) -> bytes:
    """The whole file; ``FileNotFoundError`` naming the location when it is absent."""
    fs, path = filesystem(location)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{location}: file not found") from None
    except OSError as error:
        if not exists(location):
            raise FileNotFoundError(f"{location}: file not found") from None
        raise OSError(f"{location}: cannot be read ({error})") from error


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode()


def write_bytes(location: str | Path, data: bytes) -> None:
    """Write atomically: a reader sees the old file or the new one, never a part."""
    local = local_path(location)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            staging.write_bytes(data)
            os.replace(staging, local)
        finally:
            staging.unlink(missing_ok=True)
        return
    fs, path = filesystem(location)
    with fs.open_output_stream(path) as stream:  # the object appears whole, when closed
        stream.write(data)


def write_text(location: str | Path, text: str) -> None:
    write_bytes(location, text.encode())


def upload_file(source: Path, location: str | Path) -> None:
    """Copy a local file to a location, atomically."""
    local = local_path(location)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.copyfile(source, staging)
        os.replace(staging, local)
        return
    fs, path = filesystem(location)
    pafs.copy_files(str(source), path, pafs.LocalFileSystem(), fs)


def _list(location: str | Path, pattern: str, kind: pafs.FileType) -> list[str]:
    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    names = sorted(
        i.base_name for i in infos if i.type == kind and fnmatch.fnmatch(i.base_name, pattern)
    )
    return [join(location, n) for n in names]


def list_files(location: str | Path, pattern: str = "*") -> list[str]:
    """Files directly in a folder whose names match ``pattern``, sorted; [] if none."""
    return _list(location, pattern, pafs.FileType.File)


def list_dirs(location: str | Path, pattern: str = "*") -> list[str]:
    """Sub-folders of a folder whose names match ``pattern``, sorted; [] if none."""
    return _list(location, pattern, pafs.FileType.Directory)


def remove(location: str | Path) -> None:
    """Delete a file or a whole folder; nothing if absent."""
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def download_dir(location: str | Path, target: Path) -> Path:
    """Copy a folder's files (recursively) into the local folder ``target``."""
    fs, path = filesystem(location)
    Path(target).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(target), fs, pafs.LocalFileSystem())
    return Path(target)


def publish_dir(source: str | Path, target: str | Path, last: str) -> None:
    """Copy folder ``source`` to ``target`` so that a reader never sees a part of it.

    Locally: copied beside, then swapped in by two renames (old aside, new in). On an object
    store (no renames): every file but ``last`` first, ``last`` at the end; readers take
    ``target`` as complete only when ``last`` is there (a replaced ``last`` appears whole, so a
    reader sees the old checkpoint or the new one; files the new folder lacks are removed).
    """
    source_local, target_local = local_path(source), local_path(target)
    if source_local is not None and target_local is not None:
        staging = target_local.with_name(f"{target_local.name}.tmp")
        retired = target_local.with_name(f"{target_local.name}.old")
        for leftover in (staging, retired):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.copytree(source_local, staging)
        if target_local.exists():
            os.replace(target_local, retired)  # the old folder stays whole until the swap
        os.replace(staging, target_local)
        shutil.rmtree(retired, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory() as directory:
        copy = download_dir(source, Path(directory) / "copy")
        files = sorted(p for p in copy.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == last)  # the completing file goes last
        wanted = {join(target, *file.relative_to(copy).parts) for file in files}
        for stale in set(list_files(target)) - wanted:
            remove(stale)
        for file in files:
            upload_file(file, join(target, *file.relative_to(copy).parts))

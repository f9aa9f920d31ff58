"""One virtual environment per peer, so peers' pins never fight each other or actorq's.

`ensure_venv(peer)` is idempotent: a marker file records the hash of the requirements
that were installed, and a venv whose marker matches is reused without calling pip.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.peers import module_path

MARKER = ".actorq-bench-requirements"
PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class InstallFailure:
    peer: str
    error: str


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "actorq-bench" / "venvs"


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def requirements_for(peer: str) -> list[str]:
    """The peer module's REQUIREMENTS, read from its source: importing the module here
    would need the very packages this function is asked to install."""
    tree = ast.parse(module_path(peer).read_text(), filename=str(module_path(peer)))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "REQUIREMENTS"
        ):
            reqs = ast.literal_eval(node.value)
            if isinstance(reqs, list) and all(isinstance(r, str) for r in reqs):
                return reqs
    raise ValueError(f"{module_path(peer)} has no literal REQUIREMENTS list of strings")


def requirements_hash(reqs: list[str]) -> str:
    text = "\n".join([sys.version.split()[0], *sorted(reqs)])
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_venv(peer: str) -> Path | InstallFailure:
    """Return the venv directory for `peer`, creating and filling it if needed."""
    try:
        reqs = requirements_for(peer)
    except (KeyError, ValueError, OSError, SyntaxError) as exc:
        return InstallFailure(peer, f"unknown peer or bad REQUIREMENTS: {exc}")
    venv_dir = cache_root() / peer
    with _locked(venv_dir.with_suffix(".lock")):
        return _ensure(peer, venv_dir, reqs)


def _ensure(peer: str, venv_dir: Path, reqs: list[str]) -> Path | InstallFailure:
    marker = venv_dir / MARKER
    digest = requirements_hash(reqs)
    if marker.is_file() and marker.read_text().strip() == digest and venv_python(venv_dir).exists():
        return venv_dir
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        proc = subprocess.run(
            [str(venv_python(venv_dir)), "-m", "pip", "install", "--quiet", *reqs],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return InstallFailure(peer, f"venv creation/pip failed: {exc!r}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        return InstallFailure(peer, f"pip install exited {proc.returncode}: {tail}")
    marker.write_text(digest + "\n")
    return venv_dir


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise installs of one peer across concurrent harness processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


if __name__ == "__main__":  # python -m bench.peers.venvs rq celery ...
    for name in sys.argv[1:]:
        print(name, ensure_venv(name))

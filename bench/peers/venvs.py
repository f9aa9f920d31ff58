"""One virtual environment per peer, so peers' pins never fight each other or actorq's.

`ensure_venv(peer)` is idempotent: a marker file records the hash of the requirements
that were installed, and a venv whose marker matches is reused without calling pip.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

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
    # Each peer module imports only its own library at top level, but to stay safe in the
    # parent interpreter (which lacks peers' packages) the REQUIREMENTS list is read from
    # source rather than by importing the module.
    from bench.peers.registry import requirements

    return requirements(peer)


def requirements_hash(reqs: list[str]) -> str:
    text = "\n".join([sys.version.split()[0], *sorted(reqs)])
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_venv(peer: str) -> Path | InstallFailure:
    """Return the venv directory for `peer`, creating and filling it if needed."""
    try:
        reqs = requirements_for(peer)
    except (KeyError, ValueError) as exc:
        return InstallFailure(peer, f"unknown peer or bad REQUIREMENTS: {exc}")
    venv_dir = cache_root() / peer
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


if __name__ == "__main__":  # pragma: no cover - convenience: python -m bench.peers.venvs rq
    importlib.import_module("bench.peers")
    for name in sys.argv[1:]:
        print(name, ensure_venv(name))

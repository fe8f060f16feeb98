"""mypy over archspec as it is installed: backends/ and cli/ are the packages archspec.backends and
archspec.cli (pyproject's package-dir), which mypy cannot map from the tree, so calls between them
and the core would go unchecked. This builds a throwaway tree of links in that layout, runs mypy
on it with the project's configuration, and reports the tree's own paths.

    python scripts/typecheck.py        # CI runs this; extra arguments go to mypy
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"backends": ROOT / "backends", "cli": ROOT / "cli"}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "archspec"
        package.mkdir()
        for entry in (ROOT / "archspec").iterdir():
            if entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry)
        for name, source in MAPPED.items():
            (package / name).symlink_to(source)
        command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
        command += ["--cache-dir", str(ROOT / ".mypy_cache"), *sys.argv[1:], "archspec"]
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
    for line in (done.stdout + done.stderr).splitlines():
        for name in MAPPED:
            line = line.replace(f"archspec/{name}/", f"{name}/")
        print(line)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

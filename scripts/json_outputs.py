"""Write the `--json` output (and, where one fails, its error line) of every costing command on
every shipped spec to a directory.

Run it on two checkouts and diff the directories to show that a change left the outputs
byte-identical:

    python scripts/json_outputs.py /tmp/before   # on the old commit
    python scripts/json_outputs.py /tmp/after    # on the new one
    diff -r /tmp/before /tmp/after
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(spec: Path) -> dict[str, list[str]]:
    s = str(spec.relative_to(ROOT))
    size = spec.name.split("_")[0]  # b0 ... b5, or tiny
    target = f"specs/{size}_g1.yaml" if (ROOT / f"specs/{size}_g1.yaml").exists() else "efficientnet-b0"
    return {
        "compile": ["compile", s, "--json"],
        "stats": ["stats", s, "--json"],
        "match-flops": ["match-flops", s, "--target", target, "--json"],
        "resolutions": ["resolutions", s, "--json"],
        "plan": ["plan", s, "--stages", "2", "--json"],
        "sweep": ["sweep", s, "--group-sizes", "1,4,16,32,64", "--expansions", "6,5,4,3,2", "--json"],
    }


def run(args: list[str]) -> tuple[int, str]:
    from archspec.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue() + (f"stderr: {err.getvalue()}" if code else "")


def main() -> None:
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        for name, args in commands(spec).items():
            code, text = run(args)
            (target / f"{spec.stem}.{name}.json").write_text(f"exit {code}\n{text}")
    print(f"wrote {len(list(target.iterdir()))} files to {target}")


if __name__ == "__main__":
    main()

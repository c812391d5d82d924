"""The release workflow's own steps, kept here so they are tested (tests/test_release.py).

    python scripts/release.py check-dist DIST TAG     the tag is the version that was built
    python scripts/release.py notes VERSION           that version's CHANGELOG.md section
    python scripts/release.py pin-action IMAGE DIGEST action.yml runs IMAGE@DIGEST

check-dist: DIST holds exactly one sdist and one wheel, both of the version the tag names
(`vX.Y.Z`); the version is read from the wheel's own metadata, which the build took from
`streampixel_distribute.__version__` (the one version source). Prints `version=X.Y.Z` and
`major=X` for $GITHUB_OUTPUT. notes: the section under `## [X.Y.Z]` up to the next `## `,
which must say something. Each failure prints a `::error::` line and exits 1.
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = re.compile(r"v(?P<major>0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)")
PROJECT = "streampixel_distribute"


class ReleaseError(Exception):
    pass


def wheel_version(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise ReleaseError(f"{wheel.name} has {len(names)} METADATA files, not one")
        metadata = HeaderParser().parsestr(archive.read(names[0]).decode("utf-8"))
    return str(metadata["Version"])


def check_dist(dist: Path, tag: str) -> dict[str, str]:
    match = TAG.fullmatch(tag)
    if match is None:
        raise ReleaseError(f"tag {tag!r} is not vX.Y.Z")
    files = sorted(p.name for p in dist.iterdir())
    wheels = [dist / n for n in files if n.endswith(".whl")]
    sdists = [n for n in files if n.endswith(".tar.gz")]
    if len(wheels) != 1 or len(sdists) != 1 or len(files) != 2:
        raise ReleaseError(f"{dist} should hold one wheel and one sdist, not {files}")
    version, wanted = wheel_version(wheels[0]), tag[1:]
    if version != wanted:
        raise ReleaseError(f"tag {tag} but the package's version is {version}: set __version__ "
                           f"in src/{PROJECT}/__init__.py to {wanted} and tag that commit")
    expected = [f"{PROJECT}-{version}-py3-none-any.whl", f"{PROJECT}-{version}.tar.gz"]
    if sorted(files) != sorted(expected):
        raise ReleaseError(f"{dist} holds {files}, not {expected}")
    return {"version": version, "major": match["major"]}


def notes(changelog: str, version: str) -> str:
    heading = re.compile(rf"^## \[{re.escape(version)}\](?: - \d{{4}}-\d{{2}}-\d{{2}})?\s*$", re.M)
    found = heading.search(changelog)
    if found is None:
        raise ReleaseError(f"CHANGELOG.md has no `## [{version}] - YYYY-MM-DD` section: rename "
                           f"`## [Unreleased]` to it before tagging")
    end = re.compile(r"^## ", re.M).search(changelog, found.end())
    body = changelog[found.end():end.start() if end else len(changelog)]
    body = re.sub(r"^\[[^\]]+\]: \S+\s*$", "", body, flags=re.M).strip()  # link definitions
    if not re.search(r"^- \S", body, re.M):
        raise ReleaseError(f"CHANGELOG.md's section for {version} lists no change")
    return body + "\n"


def pin_action(action_yml: str, image: str, digest: str) -> str:
    if not re.fullmatch(r"ghcr\.io/[a-z0-9._/-]+", image) or not re.fullmatch(
            r"sha256:[0-9a-f]{64}", digest):
        raise ReleaseError(f"not an image and digest: {image!r} {digest!r}")
    pinned, count = re.subn(r"^  image: Dockerfile$", f"  image: docker://{image}@{digest}",
                            action_yml, flags=re.M)
    if count != 1:
        raise ReleaseError("action.yml has no `  image: Dockerfile` line to pin")
    return pinned


def main(argv: list[str]) -> int:
    try:
        match argv:
            case ["check-dist", dist, tag]:
                for key, value in check_dist(Path(dist), tag).items():
                    print(f"{key}={value}")
            case ["notes", version]:
                print(notes((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), version), end="")
            case ["pin-action", image, digest]:
                path = ROOT / "action.yml"
                path.write_text(pin_action(path.read_text(encoding="utf-8"), image, digest),
                                encoding="utf-8")
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except ReleaseError as error:
        print(f"::error::{error}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

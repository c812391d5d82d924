"""scripts/release.py: the release workflow's checks, on real files.

The tag must be the version that was built (read from the wheel's metadata, not from a source file
by text), the release notes are the version's CHANGELOG.md section, and the published action.yml
runs the image by digest.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from streampixel_distribute import __version__

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "release.py"
DIGEST = "sha256:" + "ab" * 32


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release = load()


def make_dist(directory: Path, version: str, *, wheel_version: str | None = None) -> Path:
    """A wheel and an sdist named for `version`; the wheel's METADATA says `wheel_version`."""
    directory.mkdir()
    name = "streampixel_distribute"
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", f'__version__ = "{version}"\n')
        wheel.writestr(f"{name}-{version}.dist-info/METADATA",
                       f"Metadata-Version: 2.4\nName: streampixel-distribute\n"
                       f"Version: {wheel_version or version}\n\nREADME\n")
    with tarfile.open(directory / f"{name}-{version}.tar.gz", "w:gz") as sdist:
        data = f"Name: streampixel-distribute\nVersion: {version}\n".encode()
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        sdist.addfile(info, io.BytesIO(data))
    return directory


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_check_dist_gives_the_outputs_for_a_matching_tag(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", "1.4.2")
    done = run("check-dist", str(dist), "v1.4.2")
    assert (done.returncode, done.stdout) == (0, "version=1.4.2\nmajor=1\n"), done.stderr


@pytest.mark.parametrize(("tag", "wheel_version", "expected"), [
    ("v1.4.3", None, "tag v1.4.3 but the package's version is 1.4.2: set __version__"),
    ("v1.4.2", "1.4.2.post1", "tag v1.4.2 but the package's version is 1.4.2.post1"),
    ("1.4.2", None, "tag '1.4.2' is not vX.Y.Z"),
    ("v1.4.2-rc1", None, "is not vX.Y.Z"),
    ("v01.4.2", None, "is not vX.Y.Z"),
])
def test_check_dist_refuses_a_tag_that_is_not_the_built_version(
    tmp_path: Path, tag: str, wheel_version: str | None, expected: str
) -> None:
    dist = make_dist(tmp_path / "dist", "1.4.2", wheel_version=wheel_version)
    done = run("check-dist", str(dist), tag)
    assert done.returncode == 1
    assert done.stdout.startswith("::error::") and expected in done.stdout, done.stdout


def test_check_dist_wants_exactly_one_wheel_and_one_sdist(tmp_path: Path) -> None:
    dist = make_dist(tmp_path / "dist", "1.4.2")
    (dist / "notes.md").write_text("stray\n")
    with pytest.raises(release.ReleaseError, match="one wheel and one sdist"):
        release.check_dist(dist, "v1.4.2")
    (dist / "notes.md").unlink()
    next(dist.glob("*.tar.gz")).unlink()
    with pytest.raises(release.ReleaseError, match="one wheel and one sdist"):
        release.check_dist(dist, "v1.4.2")


def test_the_wheel_version_is_the_package_version(tmp_path: Path) -> None:
    """The same reading on this checkout's own version: what check-dist compares the tag to."""
    dist = make_dist(tmp_path / "dist", __version__)
    assert release.check_dist(dist, f"v{__version__}")["version"] == __version__


CHANGELOG = """# Changelog

## [Unreleased]

## [1.4.2] - 2026-12-01

### Fixed

- The thing.

## [1.4.1] - 2026-11-01

### Added

- The other thing.

[1.4.2]: https://example.invalid/compare/v1.4.1...v1.4.2
"""


def test_notes_are_the_version_section_only() -> None:
    assert release.notes(CHANGELOG, "1.4.2") == "### Fixed\n\n- The thing.\n"
    assert release.notes(CHANGELOG, "1.4.1") == "### Added\n\n- The other thing.\n"
    with pytest.raises(release.ReleaseError, match=r"no `## \[1.5.0\] - YYYY-MM-DD` section"):
        release.notes(CHANGELOG, "1.5.0")
    with pytest.raises(release.ReleaseError, match="lists no change"):
        release.notes(CHANGELOG, "Unreleased")


def test_the_changelog_lists_what_the_next_release_brings() -> None:
    """Keep a Changelog form: the Unreleased section is what the next tag's notes will be."""
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog\n")
    body = release.notes(changelog, "Unreleased")
    sections = [line for line in body.splitlines() if line.startswith("### ")]
    assert sections and set(sections) <= {f"### {kind}" for kind in
                                          ("Added", "Changed", "Deprecated", "Removed", "Fixed",
                                           "Security")}, sections


def test_pin_action_rewrites_only_the_image_line() -> None:
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    pinned = release.pin_action(action, "ghcr.io/octo/streampixel-distribute", DIGEST)
    assert pinned.replace(f"docker://ghcr.io/octo/streampixel-distribute@{DIGEST}",
                          "Dockerfile") == action
    with pytest.raises(release.ReleaseError, match="no `  image: Dockerfile` line"):
        release.pin_action(pinned, "ghcr.io/octo/streampixel-distribute", DIGEST)
    with pytest.raises(release.ReleaseError, match="not an image and digest"):
        release.pin_action(action, "ghcr.io/octo/x", "sha256:abc")

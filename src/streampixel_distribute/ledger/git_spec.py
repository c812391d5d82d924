"""Where a git ledger lives: the `github`, `github://owner/repo`, `git+file://…` and
`git+http(s)://…` specs, parsed into a `GitTarget` whose URL never carries credentials.

The `github-token` goes only to the `github` ledgers, that is to `GITHUB_SERVER_URL` (which must be
https, loopback aside), never to a host named in a `git+http(s)` URL. Credentials in the URL are
found permissively (`urls.find_userinfo`), and a URL a strict parser would misread is refused
before anything is parsed (spec.validate_spec), so no piece of a password can end up in the URL.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

from .. import redact
from ..errors import LedgerError
from ..urls import Userinfo, find_userinfo, is_loopback_host, without_userinfo
from . import LedgerContext
from .spec import printable, validate_spec

DEFAULT_REF_PREFIX = "refs/notes/streampixel-distribute"
GITHUB_USERNAME = "x-access-token"  # what GitHub expects as the Basic-auth user for a token
DEFAULT_TIMEOUT = 60.0  # seconds for one git command, so a black-holed host cannot hang a job
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)|^@$")


class GitTarget(NamedTuple):
    """Where the ledger lives, parsed from the spec. `url` never carries credentials."""

    url: str
    display: str
    username: str
    password: str
    ref: str | None  # one exact ref for every key (the JSON then holds several keys)
    ref_prefix: str  # otherwise one ref per key: <prefix>/<key>
    timeout: float

    def __repr__(self) -> str:
        return f"GitTarget(url={self.url!r})"  # never the password


def ledger_error(detail: str, hint: str) -> LedgerError:
    return LedgerError(redact.scrub(detail), hint=redact.scrub(hint))


def _valid_ref(ref: str) -> bool:
    return (
        ref.startswith("refs/")
        and not ref.endswith(("/", "."))
        and _BAD_REF.search(ref) is None
        and len(ref) <= 200
    )


def _github_server(environ: Mapping[str, str]) -> str:
    """`GITHUB_SERVER_URL`, the one place the token may go: https only (plain http on loopback)."""
    server = (environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    shown = printable(without_userinfo(server), 100)
    try:
        parts = urllib.parse.urlsplit(server)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    scheme = parts.scheme.lower() if parts else ""
    if (find_userinfo(server) is not None or not host or parts is None or parts.query
            or not (scheme == "https" or (scheme == "http" and is_loopback_host(host)))):
        raise ledger_error(
            f"GITHUB_SERVER_URL ({shown}) is not a plain https:// server URL, and the github "
            "ledger sends `github-token` there",
            "Run the job where GITHUB_SERVER_URL is the https:// URL of the GitHub server "
            "(GitHub sets it), or use a `git+https://user:token@host/…` or redis:// ledger.",
        )
    return server


def parse_spec(spec: str, context: LedgerContext) -> GitTarget:
    """Turn a ledger spec into a target; raise `LedgerError` (no secret in it) if it is unusable."""
    display = ""
    if spec == "github":
        repository = context.environ.get("GITHUB_REPOSITORY", "")
        if not repository:
            raise ledger_error(
                "ledger `github` needs GITHUB_REPOSITORY, which is only set inside GitHub Actions",
                "Outside GitHub Actions use `github://owner/repo` or `git+https://host/repo.git`.",
            )
        spec = f"github://{repository}"
        display = f"github ({printable(repository, 100)})"
    validate_spec(spec)  # credentials percent-encoded, no control characters: now parse
    info = find_userinfo(spec)
    parts = urllib.parse.urlsplit(without_userinfo(spec))
    scheme = parts.scheme.lower()
    if scheme == "github":
        url, display, username, password = _github_location(parts, display, context)
    elif scheme in ("git+file", "git+http", "git+https"):
        url, username, password = _url_location(parts, info)
        display = printable(f"git+{url}", 300)
    else:
        raise ledger_error(
            f"`{printable(scheme, 20)}` is not a git ledger",
            "Use `github`, `github://owner/repo`, `git+https://…` or `git+file:///…`.",
        )
    ref, prefix, timeout = _options(parts.query)
    return GitTarget(url, display, username, password, ref, prefix, timeout)


def _github_location(
    parts: urllib.parse.SplitResult, display: str, context: LedgerContext
) -> tuple[str, str, str, str]:
    owner_repo = f"{parts.netloc}{parts.path}".strip("/").removesuffix(".git")
    if owner_repo.count("/") != 1 or not all(owner_repo.split("/")):
        raise ledger_error(
            f"`github://{printable(owner_repo, 100)}` does not name a repository",
            "Write the shared ledger repository as `github://owner/repo`.",
        )
    url = f"{_github_server(context.environ)}/{owner_repo}.git"
    display = display or printable(f"github://{owner_repo}", 200)
    if not context.github_token:
        raise ledger_error(
            f"ledger `{display}` needs a token and none was given",
            "Pass `github-token` (the default `${{ github.token }}` works for this repository "
            "with `permissions: contents: write`; a shared repository needs a PAT or GitHub "
            "App token with write access to it).",
        )
    return url, display, GITHUB_USERNAME, context.github_token


def _url_location(
    parts: urllib.parse.SplitResult, info: Userinfo | None
) -> tuple[str, str, str]:
    """The URL git is given (never with credentials) and the URL's own user and password.

    The `github-token` is never used here, whatever the host: a `git+http(s)` URL may name any
    server, and the token belongs to the `github` ledgers only.
    """
    transport = parts.scheme.lower().removeprefix("git+")
    if transport == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ledger_error(
                f"`{printable(f'git+file://{parts.netloc}{parts.path}', 200)}` is not an absolute "
                "file URL",
                "Write it as `git+file:///absolute/path/repo.git` (three slashes).",
            )
        return f"file://{parts.path}", "", ""
    url = urllib.parse.urlunsplit((transport, parts.netloc, parts.path, "", ""))
    if not parts.netloc:
        raise ledger_error(
            f"`{printable(f'git+{url}', 200)}` has no host",
            "Write it as `git+https://host/owner/repo.git`.",
        )
    if info is None:
        return url, "", ""
    return url, urllib.parse.unquote(info.username), urllib.parse.unquote(info.password or "")


def _options(query: str) -> tuple[str | None, str, float]:
    options = _parse_query(query)
    ref = options.get("ref")
    prefix = options.get("ref-prefix", DEFAULT_REF_PREFIX).rstrip("/")
    for name, value in (("ref", ref), ("ref-prefix", prefix)):
        if value is not None and not _valid_ref(value):
            raise ledger_error(
                f"`{name}={value}` is not a usable git ref name",
                "Give a full ref name such as `refs/notes/streampixel-distribute` "
                "(no spaces, `..`, `~^:?*[\\`).",
            )
    try:
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 3600:
        raise ledger_error(
            f"`timeout={options.get('timeout')}` is not a number of seconds",
            "Give `timeout` as seconds between 1 and 3600, e.g. `?timeout=60`.",
        )
    return ref, prefix, timeout


def _parse_query(query: str) -> dict[str, str]:
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"ref", "ref-prefix", "timeout"})
    if unknown:
        raise ledger_error(
            f"unknown git ledger option(s): {', '.join(unknown)}",
            "The git ledger takes `?ref=refs/…` (one ref for all keys), `?ref-prefix=refs/…` "
            "(one ref per key under it) and `?timeout=SECONDS`.",
        )
    return options



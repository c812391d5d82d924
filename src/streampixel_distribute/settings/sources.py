"""Where each input's value comes from: flag > `INPUT_*` (hyphen, then underscore) >
`STREAMPIXEL_*` > the event payload > the default. An empty value counts as not given (the
runner passes an empty `INPUT_*` for every input nobody set).

Also what to say when a required input is missing, and which raw values are secrets to mask
before anything is printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..urls import find_userinfo
from .inputs import BY_NAME, Input

Flags = Mapping[str, str | None]
FLAG = "flag"
EVENT = "event"
DEFAULT = "default"


#: Shorter pieces of a secret are not masked on their own: they would hide common words.
_CREDENTIAL_CHARS = 8

def given(value: str | None) -> str | None:
    """Trimmed (as GitHub's getInput trims), or None when empty."""
    if value is None:
        return None
    trimmed = value.strip()
    return trimmed or None


def raw_sources(spec: Input, flags: Flags, environ: Mapping[str, str]
                ) -> list[tuple[str, str | None]]:
    """Every (source label, raw value) in precedence order, given or not."""
    out: list[tuple[str, str | None]] = [(FLAG, flags.get(spec.name))]
    out.extend((name, environ.get(name)) for name in dict.fromkeys(spec.input_names))
    out.append((spec.env_name, environ.get(spec.env_name)))
    return out


def first_given(spec: Input, flags: Flags, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(value, source) of the first source that gives a value, or None."""
    for label, raw in raw_sources(spec, flags, environ):
        value = given(raw)
        if value is not None:
            return value, label
    return None


def secret_candidates(flags: Flags, environ: Mapping[str, str]) -> list[str]:
    """Every raw value of a secret input from any source, also trimmed, unquoted and split; and
    the credentials in URL inputs (`ledger`, `api-url`) as `find_userinfo` finds them.

    Meant for masking *before* validation prints anything.
    """
    found: list[str] = []
    for spec in BY_NAME.values():
        for _, raw in raw_sources(spec, flags, environ):
            if not raw:
                continue
            if spec.secret:
                found += [raw, raw.strip(), raw.strip().strip("\"'`").strip()]
                # A value pasted with a line break may be printed one line at a time.
                found.extend(part for part in raw.split() if len(part) >= _CREDENTIAL_CHARS)
                if "?" in raw:  # a presigned link: its query (the signature) on its own too
                    found.extend(_query_pieces(raw.strip()))
            elif "://" in raw:
                info = find_userinfo(raw.strip())
                if info is not None:
                    found.extend(info.secrets())
    return [v for v in dict.fromkeys(found) if v.strip()]


def where(name: str) -> str:
    """What an input holds, in words."""
    return {"api-key": "API key", "user-id": "user id", "project-id": "project id",
            "upload-id": "upload id", "github-token": "token"}.get(name, name)


def fix_from(spec: Input, source: str) -> str:
    """The end of a fix: where to correct the value, named after the source it came from."""
    if source == EVENT:
        return (" (This value came from the repository_dispatch payload's "
                f"`{spec.payload_key}`; fix the sender or give `{spec.name}` explicitly.)")
    if source == FLAG:
        return f" Correct the `{spec.flag}` argument."
    if source.startswith("INPUT_"):
        return (f" Correct the `{spec.name}` input in the workflow (or the secret it reads, "
                f"usually `{spec.env_name}`).")
    if source == spec.env_name:
        return f" Correct the `{spec.env_name}` variable or secret."
    if spec.required_for or spec.secret:
        return (f" Update where it comes from (the `{spec.env_name}` secret or the "
                f"`{spec.name}` input).")
    return ""


def missing_problem(spec: Input, flags: Flags, environ: Mapping[str, str],
                    payload_note: str, fork_note: str) -> tuple[str, str]:
    """(message, fix) for a required input that no source gave."""
    looked: list[str] = []
    for label, raw in raw_sources(spec, flags, environ):
        shown = f"`{spec.flag}`" if label == FLAG else f"`{label}`"
        absent = "not given" if label == FLAG else "not set"
        looked.append(f"{shown} ({'empty' if raw is not None else absent})")
    if spec.payload_key:
        looked.append(payload_note)
    near = near_misses(spec, environ)
    message = (f"is empty or missing. Looked at: {', '.join(looked)}. "
               f"The secret is empty or not available to this workflow (pull requests from "
               f"forks and Dependabot get no secrets).")
    if near:
        message += f" Found similar names: {', '.join(near)}."
    fix = (f"Create the `{spec.env_name}` secret (Settings → Secrets and variables → Actions) "
           f"and pass it: `{spec.name}: ${{{{ secrets.{spec.env_name} }}}}`; outside GitHub "
           f"set `{spec.env_name}` or pass `{spec.flag}`.")
    if spec.payload_key:
        fix += (" Or trigger the workflow by repository_dispatch with the Streampixel webhook "
                f"body as `client_payload` (it carries `{spec.payload_key}`).")
    if fork_note:
        fix += " " + fork_note + " Run it on push or workflow_dispatch instead."
    if environ.get("GITHUB_ACTOR", "").startswith("dependabot"):
        fix += " Runs started by Dependabot see only Dependabot secrets: add it there too."
    if near:
        fix += f" Rename to exactly `{spec.env_name}`."
    return message, fix


def near_misses(spec: Input, environ: Mapping[str, str]) -> list[str]:
    """Variable names that look like a typo of this input's names (names only, never values)."""
    exact = {spec.env_name, *spec.input_names}
    squashed = spec.name.replace("-", "").upper()
    wanted = {"STREAMPIXEL" + squashed, "INPUT" + squashed, "SP" + squashed}
    found = [
        name for name in environ
        if name not in exact and re.sub(r"[-_]", "", name.upper()) in wanted
    ]
    return [f"`{name}`" for name in sorted(found)[:5] if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name)]


def _query_pieces(url: str) -> list[str]:
    """The query of a URL, decoded and not, and each parameter value in it, where long enough
    to be a credential (`dl=0` is not one, and masking it would hide it everywhere)."""
    import urllib.parse  # noqa: PLC0415 - loaded by now on every path; kept local for clarity

    query = url.partition("?")[2].partition("#")[0]
    pieces = [query, urllib.parse.unquote(query)]
    for _name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        pieces += [value, urllib.parse.quote(value, safe="")]
    return [piece for piece in pieces if len(piece) >= _CREDENTIAL_CHARS]

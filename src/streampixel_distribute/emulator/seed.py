"""The emulator's data: the built-in demo accounts, and the seed format that adds more.

The same shape is read from `--seed FILE` and from `POST /_emulator/accounts`. It is checked
strictly (unknown fields are errors), so a typo cannot silently do nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final


@dataclass(frozen=True)
class DemoAccount:
    """Fixed, deterministic ids of the demo data (safe to print: nothing here is a secret)."""

    user_id: str = "65de0000000000000000a001"
    api_key: str = "demo-api-key-not-a-secret"
    project_id: str = "65de0000000000000000b001"
    region: str = "europe"
    upload_id: str = "65de0000000000000000c001"  # ready: distribute-file succeeds
    processing_upload_id: str = "65de0000000000000000c002"  # processing forever: 400 no URL
    rejected_upload_id: str = "65de0000000000000000c003"  # rejected: 400 no URL
    disabled_project_id: str = "65de0000000000000000b002"  # disabled by an admin: 403
    other_user_id: str = "65de0000000000000000a002"
    other_api_key: str = "other-api-key-not-a-secret"
    foreign_project_id: str = "65de0000000000000000b003"  # owned by other_user_id: 403 for demo
    foreign_upload_id: str = "65de0000000000000000c004"  # ready, in foreign_project_id


DEMO: Final = DemoAccount()
DEMO_OBJECTION: Final = "No packaged Windows executable found in the archive"
PUBLIC_KEYS: Final = frozenset({DEMO.api_key, DEMO.other_api_key})  # printed in the banner


def demo_seed() -> list[dict[str, Any]]:
    return [
        {
            "userId": DEMO.user_id,
            "apiKey": DEMO.api_key,
            "projects": [
                {
                    "projectId": DEMO.project_id,
                    "region": DEMO.region,
                    "uploads": [
                        {"uploadId": DEMO.upload_id, "ready": True},
                        {"uploadId": DEMO.processing_upload_id, "ready": False},
                        {"uploadId": DEMO.rejected_upload_id, "objection": DEMO_OBJECTION},
                    ],
                },
                {"projectId": DEMO.disabled_project_id, "enabled": False},
            ],
        },
        {
            "userId": DEMO.other_user_id,
            "apiKey": DEMO.other_api_key,
            "projects": [
                {
                    "projectId": DEMO.foreign_project_id,
                    "region": "us-east-1",
                    "uploads": [{"uploadId": DEMO.foreign_upload_id, "ready": True}],
                }
            ],
        },
    ]


class SeedError(ValueError):
    """A seed file or control-endpoint body that does not have the documented shape."""


# --- shape checks, shared with the fault and config bodies ---------------------------------------


def opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`obj[key]` if it is absent, null or of `kind`; otherwise a `SeedError` naming it."""
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SeedError(f"{where}.{key} must be {names}, got {type(value).__name__}")
    return value


def req_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise SeedError(f"{where}.{key} is required (a non-empty string)")
    return value


def as_obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SeedError(f"{where} must be a JSON object")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeedError(f"{where} must be a JSON array")
    return value


def no_unknown(obj: dict[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise SeedError(f"{where} has unknown field(s) {', '.join(unknown)}")


# --- the seed format -----------------------------------------------------------------------------

_ACCOUNT_KEYS: Final = {"userId", "apiKey", "projects"}
_PROJECT_KEYS: Final = {
    "projectId", "enabled", "region", "webhookUrl", "rejectObjection", "uploads",
}  # fmt: skip
_UPLOAD_KEYS: Final = {"uploadId", "ready", "readyIn", "objection", "fileUrl", "autoRelease"}


def _check_upload(raw: Any, where: str) -> None:
    upload = as_obj(raw, where)
    no_unknown(upload, _UPLOAD_KEYS, where)
    req_str(upload, "uploadId", where)
    opt(upload, "ready", bool, where)
    ready_in = opt(upload, "readyIn", (int, float), where)
    if isinstance(ready_in, bool) or (ready_in is not None and ready_in < 0):
        raise SeedError(f"{where}.readyIn must be a number of seconds >= 0")
    opt(upload, "objection", str, where)
    opt(upload, "fileUrl", str, where)
    opt(upload, "autoRelease", bool, where)


def _check_project(raw: Any, where: str) -> None:
    project = as_obj(raw, where)
    no_unknown(project, _PROJECT_KEYS, where)
    req_str(project, "projectId", where)
    opt(project, "enabled", bool, where)
    for key in ("region", "webhookUrl", "rejectObjection"):
        opt(project, key, str, where)
    for k, upload in enumerate(as_list(project.get("uploads"), f"{where}.uploads")):
        _check_upload(upload, f"{where}.uploads[{k}]")


def parse_accounts(data: Any, where: str = "seed") -> tuple[list[dict[str, Any]], bool]:
    """Validate the seed shape; returns (accounts, include_demo). Raises `SeedError`."""
    if isinstance(data, list):
        data = {"accounts": data}
    top = as_obj(data, where)
    no_unknown(top, {"accounts", "demo"}, where)
    include_demo = opt(top, "demo", bool, where)
    accounts = as_list(top.get("accounts"), f"{where}.accounts")
    for i, raw_account in enumerate(accounts):
        at = f"{where}.accounts[{i}]"
        account = as_obj(raw_account, at)
        no_unknown(account, _ACCOUNT_KEYS, at)
        req_str(account, "userId", at)
        req_str(account, "apiKey", at)
        for j, project in enumerate(as_list(account.get("projects"), f"{at}.projects")):
            _check_project(project, f"{at}.projects[{j}]")
    return accounts, include_demo is not False


def load_seed(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bool]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read seed file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedError(f"seed file {path} is not valid JSON: {exc}") from None
    return parse_accounts(data, where=Path(path).name)

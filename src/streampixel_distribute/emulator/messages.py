"""What the API answers: the paths it serves and the `message` strings of its responses."""

from __future__ import annotations

import math
from typing import Final

API_BASE: Final = "/pixelStripeApi"
ENDPOINTS: Final = ("distribute-file", "upload-file", "test-webhook")
WRITE_ENDPOINTS: Final = ("upload-file", "distribute-file")  # the two rate-limited calls

# The strings Streampixel documents. MSG_NO_URL, MSG_UNSUPPORTED, MSG_BAD_JSON and
# MSG_BAD_FILE_URL are our wording: the docs name these cases, but their exact text is unreadable.
MSG_MISSING: Final = "Missing required field: {}"
MSG_INVALID_USER: Final = "Invalid User"
MSG_INVALID_KEY: Final = "Unauthorized: Invalid API Key"
MSG_UNAUTHORIZED: Final = "Unauthorized"
MSG_ACCESS_DENIED: Final = "Access denied"
MSG_PROJECT_NOT_FOUND: Final = "Project not found"
MSG_FILE_NOT_FOUND: Final = "File not found in project"
MSG_NO_URL: Final = "File has no URL yet"
MSG_TRIGGERED: Final = "Distribution triggered"
MSG_QUEUED: Final = "Build queued for processing"
MSG_NO_WEBHOOK: Final = "No webhook URL configured"
MSG_WEBHOOK_OK: Final = "Test webhook delivered"
MSG_WEBHOOK_FAIL: Final = "Webhook endpoint returned non-2xx status"
MSG_UNSUPPORTED: Final = "Unsupported Media Type: send Content-Type: application/json"
MSG_BAD_JSON: Final = "Invalid JSON body"
MSG_BAD_FILE_URL: Final = "Invalid fileUrl: must be a direct download link to a .zip file"
MSG_BAD_AUTO_RELEASE: Final = "Invalid field: autoRelease must be a boolean"
MSG_NOT_FOUND: Final = "Not found"
MSG_TOO_LARGE: Final = "Payload too large"


def rate_limit_message(remaining: float) -> str:
    """The 429 text, rendered from the real remaining time (the docs show `... in 2 minutes.`)."""
    if remaining >= 60:
        count, unit = math.ceil(remaining / 60), "minute"
    else:
        count, unit = max(1, math.ceil(remaining)), "second"
    return f"Rate limit exceeded. Try again in {count} {unit}{'' if count == 1 else 's'}."


def endpoint_of(path: str) -> str | None:
    """The endpoint a path ends in, under any prefix; None for every other path."""
    for name in ENDPOINTS:
        if path.endswith("/projects/" + name):
            return name
    return None

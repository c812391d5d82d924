"""`streampixel-distribute listen`: a durable receiver for Streampixel's webhooks.

Streampixel delivers each webhook once, unsigned, with a 10 s timeout and no retries. This server
(waitress: a production WSGI server in pure Python) accepts deliveries on `/webhook/<token>`,
validates the envelope, commits it to a SQLite queue before answering 2xx, and acts on it
afterwards in worker threads: `distribute` (through the same coordinator and ledger as the
action) or `dispatch` (a GitHub repository_dispatch). See docs/listener.md.

Modules: config (flags, env, action rules), service (the running listener), server (the WSGI
app), connections (waitress with request deadlines and eviction against slow clients), queue
(SQLite), worker and actions (what happens after the 2xx), metrics (Prometheus), log (JSON lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import redact
from ..cli import Parsed, flags_of, guarded
from ..errors import DistributeError, InvalidInput
from ..settings import Command, load, secret_candidates
from .config import ListenerConfig, load_config
from .log import JsonLog, route_library_logs

#: What `pip install 'streampixel-distribute[listen]'` adds, by import name.
EXTRA = ("waitress", "jsonschema", "prometheus_client")

#: A listener may hold a backlog of approvals: each waits for its turn longer than a CI job would.
LISTENER_MAX_WAIT = "21600"


def serve(parsed: Parsed, environ: Mapping[str, str]) -> int:
    """Start the listener from parsed arguments; returns the exit code when it stops."""
    log = JsonLog()
    route_library_logs(log)
    flags = flags_of(Command.LISTEN, parsed)
    # Secrets first: nothing is logged before the scrubber knows them.
    for secret in [*secret_candidates(flags, environ), parsed.token or "",
                   environ.get("STREAMPIXEL_WEBHOOK_TOKEN", ""), environ.get("GITHUB_TOKEN", "")]:
        redact.register(secret.strip())

    def start_and_serve() -> int:
        _require_extra()
        config = load_config(parsed, environ)
        account = None
        if config.rules.uses("distribute"):
            job = load(Command.LISTEN, _listener_flags(flags, environ, config), environ)
            for warning in job.warnings:
                log.warning(warning, title="Input")
            account = job.account
        from .service import Listener  # noqa: PLC0415 - needs the extra, checked above

        return Listener(config, account, environ, log).serve()

    outcome = guarded(start_and_serve)
    if isinstance(outcome, InvalidInput):
        log.error(outcome.title, problems=[str(p) for p in outcome.problems])
    elif isinstance(outcome, DistributeError):
        log.error(f"{outcome.title}: {outcome.detail}", hint=outcome.hint)
    if isinstance(outcome, DistributeError):
        return outcome.code
    return outcome


def _require_extra() -> None:
    import importlib.util  # noqa: PLC0415

    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise DistributeError(
            f"the listener needs {', '.join(missing)}, which is not installed",
            title="Missing dependency",
            hint="Install the listener extra: pip install 'streampixel-distribute[listen]' "
            "(the container image includes it).")


def _listener_flags(flags: Mapping[str, str | None], environ: Mapping[str, str],
                    config: ListenerConfig) -> dict[str, str | None]:
    """The listener's own defaults: a file ledger next to the queue, a long max-wait."""
    out = dict(flags)
    if not out.get("ledger") and not environ.get("STREAMPIXEL_LEDGER", "").strip():
        # Spacing survives restarts, and other jobs on this host can share it.
        out["ledger"] = (Path(config.queue).resolve().parent / "streampixel-ledger.json").as_uri()
    if not out.get("max-wait") and not environ.get("STREAMPIXEL_MAX_WAIT", "").strip():
        out["max-wait"] = LISTENER_MAX_WAIT
    return out


__all__ = ["serve"]

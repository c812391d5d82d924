"""Who this job is, in the CI system that runs it: what the queue shows about a reservation.

Only identifiers the CI prints itself (repository, run, job, the job's page); never a token,
never a value of an input. Values are cut to what a log line can show.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple

from . import redact


class Origin(NamedTuple):
    text: str  # `acme/showroom run 8123 attempt 1 job ship`
    url: str  # the run's or job's page, "" if none


def _url(value: str) -> str:
    """An http(s) page address without credentials, query or fragment; "" otherwise."""
    try:
        parts = urllib.parse.urlsplit(value.strip())
    except ValueError:
        return ""
    if parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
        return ""
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def origin(environ: Mapping[str, str]) -> Origin:
    """This job as its CI names it: GitHub Actions, GitLab CI, Jenkins, CircleCI, Buildkite;
    elsewhere the host name and process id."""
    env = environ.get
    if env("GITHUB_RUN_ID"):
        repo, run, attempt = env("GITHUB_REPOSITORY", "?"), env("GITHUB_RUN_ID", ""), \
            env("GITHUB_RUN_ATTEMPT", "1")
        server = env("GITHUB_SERVER_URL", "https://github.com")
        return _clean(f"{repo} run {run} attempt {attempt} job {env('GITHUB_JOB', '?')}",
                      f"{server}/{repo}/actions/runs/{run}/attempts/{attempt}")
    if env("GITLAB_CI") and env("CI_JOB_ID"):
        return _clean(f"{env('CI_PROJECT_PATH', '?')} pipeline {env('CI_PIPELINE_ID', '?')} "
                      f"job {env('CI_JOB_NAME', env('CI_JOB_ID', '?'))}", env("CI_JOB_URL", ""))
    if env("BUILDKITE_BUILD_URL"):
        return _clean(f"{env('BUILDKITE_PIPELINE_SLUG', '?')} build "
                      f"{env('BUILDKITE_BUILD_NUMBER', '?')} step {env('BUILDKITE_LABEL', '?')}",
                      env("BUILDKITE_BUILD_URL", ""))
    if env("CIRCLE_BUILD_URL"):
        return _clean(f"{env('CIRCLE_PROJECT_REPONAME', '?')} build "
                      f"{env('CIRCLE_BUILD_NUM', '?')} job {env('CIRCLE_JOB', '?')}",
                      env("CIRCLE_BUILD_URL", ""))
    if env("JENKINS_URL") and env("BUILD_URL"):
        return _clean(f"{env('JOB_NAME', '?')} build {env('BUILD_NUMBER', '?')}",
                      env("BUILD_URL", ""))
    return _clean(f"{_host_name()} pid {os.getpid()}", "")


def _host_name() -> str:
    if hasattr(os, "uname"):  # POSIX: the kernel's node name, without importing socket (~10 ms)
        return os.uname().nodename
    import socket  # noqa: PLC0415

    return socket.gethostname()


def _clean(text: str, url: str) -> Origin:
    return Origin(redact.one_line(text, 120), redact.scrub(_url(url)))

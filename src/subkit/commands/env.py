"""`subkit env create`: the grader's pinned environment, created once (``subkit.grader.
environment`` does the work; its progress goes through ``subkit.ui``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from subkit.profile import Profile


@dataclass(frozen=True)
class EnvCreateOptions:
    force: bool = False  # rebuild it even when it is ready


def create(opts: EnvCreateOptions, prof: Profile) -> dict:
    """The environment's status (``environment.env_status``) after creating it;
    ``created_now`` is False when it was ready already."""
    from subkit.grader import environment

    before = environment.env_status(prof)
    if before["state"] == "ready" and not opts.force:
        return {**before, "created_now": False}
    environment.ensure_env(prof, create=True, force=opts.force)
    environment.clear_failure(prof)
    return {**environment.env_status(prof), "created_now": True}

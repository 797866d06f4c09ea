"""`subkit submit`: check, then credentials, then upload, then record.

The HTTP clients (``subkit.remote``) only speak to the services; this package decides the
order, which matters for the credentials:

1. the arguments and the file are checked first (bad input costs nothing);
2. the pre-upload check runs: for a Codabench zip that is ``subkit.checks.check_zip``,
   which runs the submission (untrusted code) in a child. Meanwhile the platforms' secret
   variables are out of this process's environment (``credentials.withheld_env``: a child
   inherits nothing and reads nothing in ``/proc/<pid>/environ``), no saved token or key
   file has been read, and no password asked;
3. only then are credentials read (or a login asked through ``subkit.ui.ask``), and the
   service asked whether it takes the submission; refusals stop here, before any byte is
   uploaded;
4. upload, submission, one ``submit`` record in the ledger; with ``--wait`` the result and
   the scores become a ``leaderboard`` record (on Codabench with the platform's logs kept
   beside it, ``logs.py``).

One module per platform (``codabench.py``, ``kaggle.py``) over what they share
(``common.py``: the options, the pre-check, the ledger rows). Every refusal says the
service's own reason and what to do. Nothing here prints: progress goes through
``subkit.ui``; the command prints the result.
"""

from __future__ import annotations

from typing import Any

from subkit.commands.submit import codabench, kaggle
from subkit.commands.submit.common import SubmitOptions
from subkit.errors import UsageError

__all__ = ["SubmitOptions", "submit"]


def submit(opts: SubmitOptions, profile: Any, ledger: Any) -> dict:
    if opts.platform == "codabench":
        return codabench.submit_codabench(opts, profile, ledger)
    if opts.platform == "kaggle":
        return kaggle.submit_kaggle(opts, profile, ledger)
    raise UsageError("say where to submit: --codabench COMPETITION or --kaggle COMPETITION",
                     hint="e.g. subkit submit sub.zip --codabench 1234")

"""Shared by the hostile submissions (zipped next to each model.py).

targets.json (written by the test into the zip) says where to aim: the secrets, the user's
files, the workspace, the ledger, the test labels, servers to reach. What an attack takes
goes to loot.json next to model.py and to stdout ("LOOT {...}" lines): the tests assert
that nothing of value arrives there, nor anywhere else.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LOOT = {}


def targets():
    with open(os.path.join(HERE, "targets.json")) as fh:
        return json.load(fh)


def take(key, value):
    LOOT[key] = value
    print("LOOT " + json.dumps({key: value}, default=str)[:20000], flush=True)
    try:
        with open(os.path.join(HERE, "loot.json"), "w") as fh:
            json.dump(LOOT, fh, default=str)
    except OSError:
        pass


def attempt(key, fn):
    """Run one attack; record its result or why it failed."""
    try:
        take(key, fn())
    except BaseException as exc:  # noqa: BLE001 - an attack records every failure
        take(key + ":failed", f"{type(exc).__name__}: {exc}"[:300])


def read(path):
    with open(os.path.expanduser(path), "rb") as fh:
        return fh.read(1 << 20).decode("latin-1")

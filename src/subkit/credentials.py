"""Credentials for the platforms, kept out of sight.

- subkit's own config folder is ``$XDG_CONFIG_HOME/subkit`` (else ``~/.config/subkit``),
  created ``0700``; every file in it is written ``0600`` (temp file + rename, so a crash
  never leaves half a file and there is no moment where it is readable by others).
- Codabench: ``CODABENCH_TOKEN`` wins; else a token saved by an earlier login (the
  password itself is never stored: it is exchanged once for a token, and the token saved).
- Kaggle, in the official client's order (Kaggle/kaggle-cli ``kaggle_api_extended.py``
  ``KaggleApi.authenticate``; kagglesdk ``kaggle_env.py`` ``get_access_token_from_env``):
  an access token (inside a Kaggle notebook the file named by ``KAGGLE_API_V1_TOKEN``;
  ``KAGGLE_API_TOKEN``, the token itself or the path of a file holding it;
  ``~/.kaggle/access_token``, ``~/.kaggle/access_token.txt``), sent as a Bearer token;
  then the legacy API key: ``kaggle.json`` in the config folder, each of its values
  overridden by ``KAGGLE_USERNAME``/``KAGGLE_KEY``, sent as HTTP Basic.
- ``withheld_env`` takes the secrets out of this process's environment while untrusted
  code runs in a child (``subkit submit``'s check before the upload): out of
  ``os.environ`` (so no child inherits them) and blanked in the process's own
  environment block (so a child cannot read them from ``/proc/<subkit's pid>/environ``).

Nothing here prints a secret, and no error message contains one.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subkit.errors import InputError
from subkit.fsutil import atomic_open

CODABENCH_FILE = "codabench.json"
# the environment variables that hold a platform secret (KAGGLE_USERNAME is not one)
SECRET_ENV = ("CODABENCH_TOKEN", "KAGGLE_API_TOKEN", "KAGGLE_KEY")


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base).expanduser() if base else Path.home() / ".config"
    return root / "subkit"


def _ensure_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o700)
    except OSError:  # pragma: no cover - a folder we do not own
        pass


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` with mode 0600 from the first byte on, atomically."""
    _ensure_dir(path.parent)
    with atomic_open(path, "w", private=True, fsync=True) as fh:
        json.dump(data, fh, indent=2)


def read_private(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # tighten silently: the file holds a token
        try:
            os.chmod(path, 0o600)
        except OSError:  # pragma: no cover
            pass
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        raise InputError(f"{path} is not readable JSON",
                         hint="delete it; subkit asks for your login again") from None
    return data if isinstance(data, dict) else {}


# -- secrets out of the environment while a child runs ----------------------------------------
def _blank_proc_environ(names: set[str]) -> bool:
    """Overwrite the values of ``names`` in this process's original environment block with
    NUL bytes; that block is what ``/proc/<pid>/environ`` shows to any process allowed to
    read it (``os.environ.pop`` only drops libc's pointer to it). Linux only; False where
    it cannot be done."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat_line = fh.read()
        # fields after "(comm)" start at field 3; env_start/env_end are fields 50 and 51
        fields = stat_line[stat_line.rindex(b")") + 2:].split()
        start, end = int(fields[47]), int(fields[48])
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            offset = 0
            for entry in block.split(b"\0"):
                name, sep, value = entry.partition(b"=")
                if sep and value and name.decode("utf-8", "replace") in names:
                    mem.seek(start + offset + len(name) + 1)
                    mem.write(b"\0" * len(value))
                offset += len(entry) + 1
        return True
    except (OSError, ValueError, IndexError):
        return False


@contextmanager
def withheld_env(names: tuple[str, ...] = SECRET_ENV) -> Iterator[dict[str, str]]:
    """Move the secret variables out of the environment for the duration; yields them
    (the caller reads them from there once untrusted code is done) and puts them back into
    ``os.environ`` at the end, for callers that go on in the same process."""
    held = {n: os.environ.pop(n) for n in names if n in os.environ}
    if held and sys.platform.startswith("linux"):
        _blank_proc_environ(set(held))
    try:
        yield held
    finally:
        for name, value in held.items():
            os.environ.setdefault(name, value)


# -- Codabench -----------------------------------------------------------------------------
def _server_key(server: str) -> str:
    return server.rstrip("/").lower()


def codabench_saved_token(server: str) -> str | None:
    data = read_private(config_dir() / CODABENCH_FILE)
    entry = data.get("servers", {}).get(_server_key(server))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def codabench_may_have_token() -> bool:
    """True when a saved token may exist (the file is there), without reading it."""
    return (config_dir() / CODABENCH_FILE).is_file()


def codabench_save_token(server: str, token: str, username: str | None = None) -> Path:
    path = config_dir() / CODABENCH_FILE
    data = read_private(path)
    servers = data.setdefault("servers", {})
    servers[_server_key(server)] = {"token": token, "username": username}
    write_private(path, data)
    return path


def codabench_forget_token(server: str) -> bool:
    path = config_dir() / CODABENCH_FILE
    data = read_private(path)
    if data.get("servers", {}).pop(_server_key(server), None) is None:
        return False
    write_private(path, data)
    return True


# -- Kaggle ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class KaggleAuth:
    """How to authenticate to Kaggle: ``bearer`` (an access token) or ``basic`` (a user name
    and a legacy API key); ``source`` says where it came from, for messages."""

    kind: str
    secret: str
    source: str
    username: str | None = None


KAGGLE_TOKEN_URL = "https://www.kaggle.com/settings"


def kaggle_config_dir(env: Mapping[str, str]) -> Path:
    """Where kaggle.json lives: ``$KAGGLE_CONFIG_DIR``; else ``~/.kaggle`` if it exists;
    else, on Linux, ``$XDG_CONFIG_HOME/kaggle`` (kaggle_api_extended.py, class attribute
    ``KaggleApi.config_dir``)."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"]).expanduser()
    home = Path.home() / ".kaggle"
    if home.exists() or not sys.platform.startswith("linux"):
        return home
    xdg = env.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "kaggle"


def _token_file(path: Path) -> str | None:
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _notebook_token_file(env: Mapping[str, str]) -> Path | None:
    """Inside a Kaggle notebook, the file named by KAGGLE_API_V1_TOKEN
    (kagglesdk ``kaggle_env.py`` ``is_in_kaggle_notebook``)."""
    if env.get("KAGGLE_KERNEL_RUN_TYPE") and env.get("KAGGLE_DATA_PROXY_URL") \
            and env.get("KAGGLE_API_V1_TOKEN"):
        return Path(env["KAGGLE_API_V1_TOKEN"])
    return None


def _home_token_files() -> list[tuple[Path, str]]:
    home = Path.home() / ".kaggle"
    return [(home / "access_token", "~/.kaggle/access_token"),
            (home / "access_token.txt", "~/.kaggle/access_token.txt")]


def kaggle_access_token(env: Mapping[str, str]) -> KaggleAuth | None:
    """An access token, where kagglesdk's ``get_access_token_from_env`` looks."""
    notebook = _notebook_token_file(env)
    token = _token_file(notebook) if notebook else None
    if token:
        return KaggleAuth("bearer", token, "KAGGLE_API_V1_TOKEN (Kaggle notebook)")
    value = env.get("KAGGLE_API_TOKEN")
    if value:
        # the variable holds the token, or the path of a file holding it
        path = Path(value).expanduser() if len(value) < 4096 else None
        if path is not None and path.is_file():
            token = _token_file(path)
            if token:
                return KaggleAuth("bearer", token, f"KAGGLE_API_TOKEN (the file {path})")
        else:
            return KaggleAuth("bearer", value.strip(), "KAGGLE_API_TOKEN")
    for path, label in _home_token_files():
        token = _token_file(path)
        if token:
            return KaggleAuth("bearer", token, label)
    return None


def kaggle_api_key(env: Mapping[str, str]) -> KaggleAuth | None:
    """The legacy key: kaggle.json, each value overridden by KAGGLE_USERNAME/KAGGLE_KEY
    (``KaggleApi._load_config``: the file first, then the environment)."""
    path = kaggle_config_dir(env) / "kaggle.json"
    values: dict[str, Any] = {}
    if path.is_file():
        try:
            values = json.loads(path.read_text("utf-8")) or {}
        except (OSError, ValueError):
            raise InputError(f"{path} is not readable JSON",
                             hint=f"download a new token from {KAGGLE_TOKEN_URL} (API)"
                             ) from None
        if not isinstance(values, dict):
            values = {}
    from_env = {k: env[v] for k, v in (("username", "KAGGLE_USERNAME"), ("key", "KAGGLE_KEY"))
                if env.get(v)}
    values.update(from_env)
    user, key = values.get("username"), values.get("key")
    if not user and not key:
        return None
    if not (isinstance(user, str) and user and isinstance(key, str) and key):
        missing = "KAGGLE_KEY / key" if user else "KAGGLE_USERNAME / username"
        raise InputError(f"the Kaggle API key is incomplete: no {missing} "
                         f"({path if path.is_file() else 'environment'})",
                         hint="set both KAGGLE_USERNAME and KAGGLE_KEY, or use a complete "
                              f"kaggle.json from {KAGGLE_TOKEN_URL}")
    if from_env and path.is_file():
        source = f"{path} with {'/'.join(k.upper() for k in from_env)} from the environment"
    elif from_env:
        source = "KAGGLE_USERNAME/KAGGLE_KEY"
    else:
        source = str(path)
    return KaggleAuth("basic", key, source, username=user)


def kaggle_may_have_credentials(env: Mapping[str, str]) -> bool:
    """True when some Kaggle credential is there to be read later, without reading one."""
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    files = [p for p, _ in _home_token_files()] + [kaggle_config_dir(env) / "kaggle.json",
                                                   _notebook_token_file(env)]
    return any(p is not None and p.is_file() for p in files)


def no_kaggle_credentials_hint() -> str:
    return (f"create an API token at {KAGGLE_TOKEN_URL} (API, Generate New Token) and save it "
            "in ~/.kaggle/access_token (chmod 600) or set KAGGLE_API_TOKEN; a legacy "
            "kaggle.json in ~/.kaggle/ (or KAGGLE_USERNAME and KAGGLE_KEY) works too")

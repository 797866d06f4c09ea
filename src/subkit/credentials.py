"""Credentials for the platforms, kept out of sight.

- subkit's own config folder is ``$XDG_CONFIG_HOME/subkit`` (else ``~/.config/subkit``),
  created ``0700``; every file in it is written ``0600`` (temp file + rename, so a crash
  never leaves half a file and there is no moment where it is readable by others).
- Codabench: ``CODABENCH_TOKEN`` wins; else a token saved by an earlier login (the
  password itself is never stored: it is exchanged once for a token, and the token saved).
- Kaggle: ``KAGGLE_USERNAME``/``KAGGLE_KEY``, else ``kaggle.json`` where the official
  client looks (``$KAGGLE_CONFIG_DIR``, ``~/.kaggle``, ``~/.config/kaggle``).

Nothing here prints a secret, and no error message contains one.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from subkit.errors import InputError, SubkitError

CODABENCH_FILE = "codabench.json"


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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


# -- Codabench -----------------------------------------------------------------------------
def _server_key(server: str) -> str:
    return server.rstrip("/").lower()


def codabench_saved_token(server: str) -> str | None:
    data = read_private(config_dir() / CODABENCH_FILE)
    entry = data.get("servers", {}).get(_server_key(server))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


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
def kaggle_json_candidates() -> list[Path]:
    out = []
    env = os.environ.get("KAGGLE_CONFIG_DIR")
    if env:
        out.append(Path(env).expanduser() / "kaggle.json")
    out.append(Path.home() / ".kaggle" / "kaggle.json")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    out.append((Path(xdg).expanduser() if xdg else Path.home() / ".config") / "kaggle"
               / "kaggle.json")
    return out


def kaggle_credentials() -> tuple[str, str, str]:
    """``(username, key, where)`` of the user's Kaggle API credentials."""
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if user and key:
        return user, key, "KAGGLE_USERNAME/KAGGLE_KEY"
    for path in kaggle_json_candidates():
        if path.is_file():
            try:
                data = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                raise InputError(f"{path} is not readable JSON",
                                 hint="download a new API token from "
                                      "https://www.kaggle.com/settings (Create New Token)"
                                 ) from None
            u, k = data.get("username"), data.get("key")
            if isinstance(u, str) and isinstance(k, str) and u and k:
                return u, k, str(path)
            raise InputError(f"{path} has no username/key",
                             hint="download a new API token from https://www.kaggle.com/settings")
    raise SubkitError(
        "no Kaggle credentials found",
        hint="download kaggle.json from https://www.kaggle.com/settings (Create New Token) "
             "into ~/.kaggle/ (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY")

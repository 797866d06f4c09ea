"""The grader's pinned library versions, as a real environment subkit can run code in.

A profile's ``[grader]`` table (python, tensorflow, keras, numpy, extras) names the
libraries the competition's grader runs with. ``ensure_env`` turns that pinned set into a
virtual environment under the user's cache folder::

    ${SUBKIT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/subkit}/envs/<key>/

``<key>`` is a hash of the pinned set and of the Python minor version the venv is built on,
so two profiles with the same pins share one environment and a change of any pin makes a new
one. The folder is complete only when its marker ``subkit-env.json`` exists: the marker is
written last, after pip finished and a post-install import check (``import numpy,
tensorflow, keras`` and the installed versions compared with the pins) passed. A folder
without the marker is what an interrupted or failed install leaves: it is removed and never
reused. A lock file (``envs/<key>.lock``, ``flock``) keeps two processes from building the
same environment at once; the second one waits and then reuses the first one's result.

Python: where the profile's Python (e.g. 3.10) is not the local one, subkit looks for that
interpreter (``$SUBKIT_GRADER_PYTHON``, ``pythonX.Y`` on PATH, pyenv's versions folder);
without one it says so and builds the venv on the local interpreter with the pinned
packages. Which one was used is in the marker and in every run record.

Nothing here imports TensorFlow: versions of the current environment are read from package
metadata, those of the grader environment from its marker.

The package, one module per job: ``pinset`` (the profile's pins as requirements),
``interpreters`` (which Python the venv is built on), ``installers`` (the package index, uv
or pip, the import check), ``store`` (the cache folder, the marker, the lock; building,
reusing and removing an environment) and ``choice`` (``--env auto|grader|current`` and the
run record's description). The names other modules use are re-exported here; a test that
replaces one replaces it in the module that owns it.
"""

from __future__ import annotations

from subkit.grader.environment.choice import (
    ENV_CHOICES,
    ENV_NAMES,
    FAILED_RETRY_S,
    clear_failure,
    current_description,
    default_env,
    differences,
    resolve_python,
    select_env,
    versions_text,
)
from subkit.grader.environment.installers import (
    DOWNLOAD_HINT_MB,
    PIP_TIMEOUT_S,
    Installer,
    Runner,
    available_versions,
    check_pins_available,
    download_size,
    import_check,
    install_command,
    installer_kind,
    make_venv,
    pip_install,
    uv_binary,
)
from subkit.grader.environment.interpreters import find_interpreter
from subkit.grader.environment.pinset import MAIN_PACKAGES, pins, requirements
from subkit.grader.environment.store import (
    MARKER,
    cache_root,
    create_env,
    ensure_env,
    env_dir,
    env_key,
    env_status,
    envs_root,
    read_marker,
    remove_env,
)

__all__ = [
    "DOWNLOAD_HINT_MB", "ENV_CHOICES", "ENV_NAMES", "FAILED_RETRY_S", "MAIN_PACKAGES",
    "MARKER", "PIP_TIMEOUT_S", "Installer", "Runner", "available_versions",
    "cache_root", "check_pins_available", "clear_failure", "create_env", "current_description",
    "default_env", "differences", "download_size", "ensure_env", "env_dir", "env_key",
    "env_status", "envs_root", "find_interpreter", "import_check", "install_command",
    "installer_kind", "make_venv", "pins", "pip_install", "read_marker", "remove_env",
    "requirements", "resolve_python", "select_env", "uv_binary", "versions_text",
]

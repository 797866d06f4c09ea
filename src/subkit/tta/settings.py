"""The TTA settings of a model.py (the template's ``TTA``, ``TTA_VIEWS``, ``TTA_MERGE``):
read them, and write the chosen ones in place, nothing else of the file changed."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from subkit.errors import InputError
from subkit.fsutil import atomic_open

_LINES = {
    "TTA": re.compile(r"^TTA[ \t]*=[ \t]*(True|False)[ \t]*(#.*)?$", re.M),
    "TTA_VIEWS": re.compile(r"^TTA_VIEWS[ \t]*=[ \t]*(\[[^\n\]]*\])[ \t]*(#.*)?$", re.M),
    "TTA_MERGE": re.compile(r"^TTA_MERGE[ \t]*=[ \t]*(\"[a-z_]*\"|'[a-z_]*')[ \t]*(#.*)?$",
                            re.M),
}


def lines(views: list[str], merge: str) -> list[str]:
    """The settings' lines for ``views`` and ``merge``, as the template writes them."""
    return ["TTA = True", f"TTA_VIEWS = {json.dumps(list(views))}",
            f"TTA_MERGE = {json.dumps(merge)}"]


def read(text: str) -> dict | None:
    """{"tta", "views", "merge"} of a model.py that has the three settings, else None."""
    found = {}
    for name, rx in _LINES.items():
        m = rx.findall(text)
        if len(m) != 1:
            return None
        found[name] = ast.literal_eval(m[0][0])
    views = found["TTA_VIEWS"]
    if not isinstance(views, list) or not all(isinstance(v, str) for v in views):
        return None
    return {"tta": bool(found["TTA"]), "views": views, "merge": found["TTA_MERGE"]}


def apply(path: Path, views: list[str], merge: str) -> dict:
    """Write ``views`` and ``merge`` (and ``TTA = True``) into ``path``'s settings; refuse
    (InputError, the file untouched) a file without them or whose views table lacks a
    chosen view. Returns {"path", "before", "after"}."""
    want = lines(views, merge)
    add = "\n    ".join(want)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise InputError(f"--apply: there is no {path.name} in the workspace ({path.parent})",
                         hint=f"write one (`subkit init` makes the template), or add to yours:"
                              f"\n    {add}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--apply: {path} cannot be read: {exc}",
                         hint="check the file (UTF-8 text)") from None
    before = read(text)
    if before is None:
        raise InputError(
            f"--apply: {path} has no TTA settings of subkit's template (one line each of TTA, "
            "TTA_VIEWS, TTA_MERGE); nothing was changed",
            hint="apply the views yourself in predict (one model call per view, the "
                 "probabilities merged), or copy the template's TTA code "
                 f"(`subkit init`) and set:\n    {add}")
    missing = [v for v in views if not re.search(rf"[\"']{re.escape(v)}[\"']\s*:", text)]
    if missing:
        raise InputError(f"--apply: {path.name} does not define the view(s) {missing} "
                         "(an older template?); nothing was changed",
                         hint="copy the views table of the current template "
                              "(subkit/templates/model.py: _VIEWS), then --apply again")
    new = text
    for rx, line in zip(_LINES.values(), want):
        def keep_comment(m: re.Match, line: str = line) -> str:
            return line + (f"  {m.group(2)}" if m.group(2) else "")

        new = rx.sub(keep_comment, new, count=1)
    if new != text:
        with atomic_open(path, "w") as fh:
            fh.write(new)
    return {"path": str(path), "before": before, "after": read(new)}

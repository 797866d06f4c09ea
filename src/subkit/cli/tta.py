"""`subkit tta tune [ZIP]`: the views and the merge chosen from the shifted score."""

from __future__ import annotations

from pathlib import Path

import click

from subkit.cli.options import echo_json, env_option, json_option, load_profile, profile_option


@click.group(name="tta")
def tta() -> None:
    """Test-time augmentation: choose the views that earn their forward pass."""


@tta.command(name="tune")
@click.argument("zip_path", metavar="[ZIP]", required=False)
@click.option("--data", "data_path", default=None, metavar="FILE",
              help="Labelled test set (default: subkit.toml's local_test).")
@click.option("--views", "views", multiple=True, metavar="A,B,...",
              help="Candidate views (default: all of the template's: identity, flip_lr, "
                   "flip_ud, rot90, rot180, rot270, transpose, transverse, zoom, contrast).")
@click.option("--shift", "shift_suite", default=None, metavar="SUITE",
              help="Shift suite (default: the profile's default suite).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the shift suite, the halves and the bootstrap.")
@click.option("--time-limit", type=float, default=None, metavar="S",
              help="The grader's limit, which one view must meet (default: the profile's).")
@click.option("--apply", "apply_", is_flag=True,
              help="Write the chosen TTA_VIEWS and TTA_MERGE into the workspace's model.py.")
@click.option("--no-network-isolation", is_flag=True,
              help="Let the submission reach the network (default: isolated).")
@env_option
@profile_option
@json_option
def tune(zip_path, data_path, views, shift_suite, seed, time_limit, apply_,
         no_network_isolation, env_name, profile_name, as_json) -> None:
    """Run each candidate view once over the local test set and the shift suite (one
    forward pass per view per image, in the sandbox, the grader's versions), then score
    every subset of views and every merge from the kept probabilities: chosen on one half
    of the test images, reported on the other. The chosen point is the fewest views within
    noise of the best shifted score."""
    from subkit.commands.tta import TuneOptions
    from subkit.commands.tta import tune as run_tune
    from subkit.errors import SubkitError

    opts = TuneOptions(zip=Path(zip_path) if zip_path else None,
                       data=Path(data_path) if data_path else None,
                       views=tuple(views) or None, shift=shift_suite, seed=seed,
                       time_limit=time_limit, env=env_name, apply=apply_,
                       isolate_network=not no_network_isolation, progress=not as_json)
    record = run_tune(opts, load_profile(profile_name))
    if as_json:
        echo_json(record)
    else:
        click.echo(render(record))
    applied = record.get("applied")
    if applied and not applied.get("ok"):
        raise SubkitError(applied["error"], hint=applied["hint"])


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def render(record: dict) -> str:
    """The front as a table, the references, the chosen point, what --apply did."""
    m = record["metric"]
    lines = []
    for w in record.get("warnings") or []:
        lines.append(click.style(f"warning: {w}", fg="yellow"))
    t = record.get("timings") or {}
    lines.append(f"tta tune {Path(record['zip']).name}: {len(record['candidates'])} candidate "
                 f"views x (clean + {len(record['sets']) - 1} shifted sets of suite "
                 f"{record['suite']}), {record['n_candidates_scored']} (subset, merge) scored; "
                 f"{record['n_choose']} images choose, {record['n_report']} report")
    head = ["views", "subset", "merge", f"shifted {m} (choose)", "shifted (report)", "± noise",
            "clean (report)"]
    rows = []
    for i, p in enumerate(record["front"]):
        star = " *" if i == record["chosen_index"] else ""
        rows.append([f"{p['n_views']}{star}", "+".join(p["views"]), p["merge"],
                     _f(p["choose"]["shifted"]), _f(p["report"]["shifted"]), _f(p.get("noise")),
                     _f(p["report"]["clean"])])
    for name, r in (record.get("references") or {}).items():
        if r:
            rows.append([str(r["n_views"]), f"({name}) " + "+".join(r["views"]), r["merge"],
                         _f(r["choose"]["shifted"]), _f(r["report"]["shifted"]), "",
                         _f(r["report"]["clean"])])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    c = record["chosen"]
    lines.append(click.style(
        f"chosen (*): {' + '.join(c['views'])}, merge {c['merge']}: {c['n_views']} forward "
        f"pass(es) per image, shifted {m} {_f(c['report']['shifted'])} on the report half "
        f"(the fewest views within noise of the best on the choose half)", bold=True))
    if t.get("per_view_s") is not None:
        lines.append(f"cost: {t['per_view_s']:.1f} s of predict per view over the suite; "
                     f"one view on the clean set {t.get('one_view_clean_s') or 0:.1f} s of the "
                     f"{record['time_limit_s']:g} s limit")
    a = record.get("applied")
    if a and a.get("ok"):
        lines.append(f"applied to {a['path']}: TTA_VIEWS = {c['views']}, TTA_MERGE = "
                     f"{c['merge']!r} (`subkit build` next)")
        if a.get("warning"):
            lines.append(click.style(f"warning: {a['warning']}", fg="yellow"))
    elif not a:
        lines.append("next: `subkit tta tune --apply` writes these settings into model.py")
    lines.append(f"report: {Path(record['run_dir']) / 'report.html'}")
    return "\n".join(lines)

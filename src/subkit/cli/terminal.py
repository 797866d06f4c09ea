"""The terminal summary of a local run: leaderboard metric first, then the details."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from subkit.grader.run import env_line, env_warnings

if TYPE_CHECKING:
    from subkit.grader.codabench.runner import BundleRunResult
    from subkit.profile import Profile


def _loud(result) -> None:
    """The environment warning (not the grader's versions), right under the headline."""
    for w in env_warnings(result.env):
        click.secho(f"  WARNING: {w}", fg="yellow", bold=True)


def print_score(result, prof: Profile) -> None:
    """The summary of a score-local run; the kind's own lines (per class, per step) come
    from its object (``Kind.summary_lines``), every kind ends the same way."""
    echo = click.echo
    if not result.ok:
        f = result.failure
        who = "the grader would fail the same way" if result.env.get("matches_grader") else \
            "it failed in the versions named below"
        click.secho(f"FAILED  {result.zip.name}: {who}", fg="red", bold=True)
        _loud(result)
        echo(f"  stage: {f.stage}")
        if f.tail:
            echo("  --- the submission's traceback/log tail ---")
            for line in f.tail.splitlines()[-15:]:
                echo("    " + line)
        echo(f"  {env_line(result.env)}")
        echo(f"  logs: {result.run_dir / 'logs'}")
        click.secho(f"error: {f.message}", fg="red", err=True)
        echo(f"hint: {f.hint}", err=True)
        print_sandbox(result.sandbox)
        return
    s = result.scores
    head = f"{result.metric} {s[result.metric]:.4f}"
    kind = prof.kind_spec
    noun, phase = kind.noun, kind.headline_suffix(result.phase)
    click.secho(f"{head}   ({result.zip.name} on {result.n} {noun} of {result.data.name}{phase})",
                bold=True)
    _loud(result)
    others = [k for k, v in s.items() if k not in (result.metric, "n") and isinstance(v, float)]
    echo("  " + "   ".join(f"{k} {s[k]:.4f}" for k in others))
    if result.shift and result.shift.get("shifted_score") is not None:
        sh = result.shift
        drop = sh["clean_score"] - sh["shifted_score"]
        if not sh.get("higher_is_better", True):  # MSE: a rise is the loss
            drop = -drop
        word = "drop" if sh.get("higher_is_better", True) else "rise"
        click.secho(f"  shifted score {sh['shifted_score']:.4f}  ({word} {drop:.4f} from clean; "
                    f"suite {sh.get('suite', '?')}, {sh.get('n_scored', '?')} sets)", bold=True)
    if getattr(result, "predicted_leaderboard", None):
        print_prediction(result.predicted_leaderboard)
    echo("")
    if result.shift:
        print_shift(result.shift)
    if getattr(result, "tta_compare", None):
        print_tta(result.tta_compare)
    for line in kind.summary_lines(result):  # per class, per step: the kind's own part
        echo(line)
    t = result.timings
    total = t.get("child_s", 0.0)
    frac = total / result.time_limit_s if result.time_limit_s else 0
    echo(f"  time: {total:.1f} s of the {result.time_limit_s:g} s limit ({frac:.0%})  "
         f"[import {t.get('import_s', 0):.1f} s, Model() {t.get('init_s', 0):.1f} s, "
         f"predict {t.get('predict_s', 0):.1f} s]")
    if result.peak_rss_mb:
        echo(f"  peak memory: {result.peak_rss_mb:.0f} MB")
    print_sandbox(result.sandbox)
    for w in result.warnings:
        if w not in env_warnings(result.env):
            click.secho(f"  warning: {w}", fg="yellow")
    echo(f"  run folder: {result.run_dir}")
    report = result.run_dir / "report.html"
    if report.is_file():
        echo(f"  report: {report}")
    click.secho(f"  {env_line(result.env)}", bold=True)


def print_sandbox(box: dict) -> None:
    """One line when the run was isolated; plain words when it was not."""
    if box.get("isolated"):
        lim = box.get("limits") or {}
        click.echo("  sandbox: bubblewrap, "
                   f"{'no network, ' if box.get('network_cut') else 'network ON, '}"
                   f"{box.get('user', 'unprivileged')}; limits {lim.get('processes')} processes, "
                   f"{lim.get('memory_mb')} MB memory "
                   f"{'for the whole run' if box.get('memory_capped') else 'a process'}, "
                   f"{lim.get('disk_mb')} MB written")
        if box.get("not_capped"):  # grader/sandbox.py caps(): what the kernel does not enforce
            click.secho(f"    not capped by the kernel: {box['not_capped']}", fg="yellow")
        return
    click.secho(f"  NOT ISOLATED: {box.get('why', 'no sandbox')}", fg="yellow", bold=True)
    click.secho(f"    the submission could reach {box.get('could_reach', 'everything you can')}",
                fg="yellow")
    click.secho(f"    to isolate it: {box.get('install', '')}", fg="yellow")


def _cell(x) -> str:
    return f"{x:7.4f}" if x is not None else f"{'-':>7}"


def print_prediction(p: dict) -> None:
    """The leaderboard prediction of the ledger's calibration, or what it needs."""
    if p.get("score") is None:
        click.echo(f"  predicted leaderboard: - ({p.get('message', 'not available')})")
        return
    actual = f"; actual {p['actual']:.4f}" if p.get("actual") is not None else ""
    click.secho(f"  predicted leaderboard {p['score']:.4f}  ({p['low']:.4f} to {p['high']:.4f}; "
                f"calibrated on {p['calibrated_on']} zips' {p.get('phase')} scores, "
                f"leave-one-out error {p['loo_error']:.4f}{actual})", bold=True)


def print_shift(sh: dict) -> None:
    """The shift suite: metric per shift and severity, worst first."""
    echo = click.echo
    echo(f"  distribution shift (suite {sh.get('suite')}, seed {sh.get('seed')}): "
         f"{sh.get('metric', '')} per shift and severity")
    sign = 1 if sh.get("higher_is_better", True) else -1  # worst first
    rows = sorted(sh.get("shifts", []), key=lambda r: (r["mean"] is None, sign * (r["mean"] or 0)))
    sevs = range(1, max([len(r.get("params") or r["severity"]) for r in rows] + [3]) + 1)
    width = max([len(r["name"]) for r in rows] + [5]) + 2
    pad = " " * (8 * len(sevs))
    echo(f"  {'shift':<{width}}" + " ".join(f"{'sev ' + str(s):>7}" for s in sevs)
         + f" {'mean':>7} {'drop':>7}")
    for r in rows:
        by = dict(zip(r["severity"], r["scores"], strict=True))
        echo(f"  {r['name']:<{width}}" + " ".join(_cell(by.get(s)) for s in sevs)
             + f" {_cell(r['mean'])} {_cell(r.get('drop'))}")
    echo(f"  {'clean':<{width}}{pad}{_cell(sh.get('clean_score'))}")
    echo(f"  {'shifted score':<{width}}{pad}{_cell(sh.get('shifted_score'))} "
         f"{_cell(sh.get('drop'))}")
    for f in sh.get("failures") or []:
        click.secho(f"  not scored: {f['key']}: {f['error']}", fg="yellow")
    t = sh.get("timings") or {}
    echo(f"  (shifted sets generated in {t.get('generate_s', 0):.1f} s while the model ran, "
         f"predicted in {t.get('predict_s', 0):.1f} s; not counted against the time limit)")
    echo("  The shifted score is a harder estimate than the clean one, not the hidden test "
         "set's score; the predicted leaderboard is calibrated on your leaderboard scores.")
    echo("")


def print_tta(t: dict) -> None:
    echo = click.echo
    if not t.get("available") or not t.get("ok", True):
        echo(f"  TTA comparison: {t.get('reason')}")
        echo("")
        return
    echo(f"  test-time augmentation ({t.get('metric', '')}):   with TTA  without    gain")
    for label, d in (("clean", t.get("clean")), ("shifted score", t.get("shifted"))):
        if d and d.get("tta") is not None and d.get("no_tta") is not None:
            gain = d["tta"] - d["no_tta"]
            echo(f"    {label:<34}{d['tta']:8.4f} {d['no_tta']:8.4f} {gain:+7.4f}")
    ps = t.get("predict_s") or {}
    if ps.get("tta") is not None and ps.get("no_tta") is not None:
        echo(f"    {'predict time (clean set)':<34}{ps['tta']:7.1f}s {ps['no_tta']:7.1f}s")
    echo("")


def print_bundle_summary(result: BundleRunResult) -> None:
    """score-local --bundle: the bundle run's summary lines, each with its style."""
    for text, style in _bundle_summary_lines(result):
        err = style.pop("err", False)
        click.secho(text, err=err, **style)


def _bundle_summary_lines(res: BundleRunResult) -> list[tuple[str, dict[str, Any]]]:
    """The terminal summary: (text, click.style kwargs) lines."""
    out: list[tuple[str, dict[str, Any]]] = []
    iods = " (ingestion during scoring)" if res.task.get("ingestion_only_during_scoring") else ""
    where = (f"{res.competition}: phase {res.phase.get('name')!r}, "
             f"task {res.task.get('index')}{iods}")
    if res.ok:
        out.append((f"PASSED  {res.zip.name} through the bundle's own programs",
                    {"fg": "green", "bold": True}))
    else:
        out.append((f"FAILED  {res.zip.name}: Codabench would fail it the same way",
                    {"fg": "red", "bold": True}))
    out.append((f"  {where}; time limit {res.time_limit_s:g} s", {}))
    out.extend((line, {}) for line in _leaderboard_lines(res.columns))
    if res.failure:
        f = res.failure
        if f.tail:
            out.append(("  --- log tail ---", {}))
            out.extend(("    " + ln, {}) for ln in f.tail.splitlines()[-20:])
        out.append((f"error: {f.message}", {"fg": "red", "err": True}))
        out.append((f"hint: {f.hint}", {"err": True}))
    for w in res.warnings:
        out.append((f"  note: {w}", {"fg": "yellow"}))
    out.append((f"  {res.sandbox_note}", {}))
    out.append((f"  the programs {env_line(res.env)} ({res.interpreter}); on Codabench they "
                f"run in the bundle's docker image {res.docker_image}", {"bold": True}))
    if res.detailed_results:
        state = "" if res.detailed_results_enabled else \
            " (the competition does not show it to participants)"
        out.append((f"  detailed results: {res.detailed_results}{state}", {}))
    out.append((f"  logs: {res.run_dir / 'logs'} (prediction_*, scoring_*: the worker's eight "
                "logs)", {}))
    out.append((f"  run folder: {res.run_dir}", {}))
    return out


def _leaderboard_lines(columns: list[dict[str, Any]]) -> list[str]:
    """A bundle run's leaderboard columns, one line each under their leaderboard's title."""
    if not columns:
        return []
    lines = []
    width = max(len(str(c["title"])) for c in columns) + 2
    board = None
    for c in columns:
        if c["leaderboard"] != board:
            board = c["leaderboard"]
            lines.append(f"  leaderboard {board!r}:")
        v = c["value"]
        prec = c["precision"] if isinstance(c["precision"], int) else 2
        shown = "-" if v is None else f"{v:.{max(prec, 4)}f}"
        extra = f"  ({c['computation']})" if c["computation"] else ""
        extra += "  hidden" if c["hidden"] else ""
        title = str(c["title"])
        lines.append(f"    {title:<{width}} {shown:>10}  [{c['key']}, {c['sorting']}]{extra}")
    return lines

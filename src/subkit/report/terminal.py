"""The terminal summary of a local run: leaderboard metric first, then the details."""

from __future__ import annotations

import click


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.4f}"


def print_score(result, prof) -> None:
    echo = click.echo
    if not result.ok:
        f = result.failure
        click.secho(f"FAILED  {result.zip.name}: the grader would fail the same way", fg="red", bold=True)
        echo(f"  stage: {f.stage}")
        if f.tail:
            echo("  --- the submission's traceback/log tail ---")
            for line in f.tail.splitlines()[-15:]:
                echo("    " + line)
        click.secho(f"error: {f.message}", fg="red", err=True)
        echo(f"hint: {f.hint}", err=True)
        echo(f"  logs: {result.run_dir / 'logs'}")
        return
    s = result.scores
    head = f"{result.metric} {s[result.metric]:.4f}"
    click.secho(f"{head}   ({result.zip.name} on {result.n} images of {result.data.name})", bold=True)
    others = [k for k in ("accuracy", "balanced_accuracy", "macro_f1") if k != result.metric]
    echo("  " + "   ".join(f"{k} {s[k]:.4f}" for k in others))
    if result.shift:
        sh = result.shift
        echo(f"  shifted score {sh['shifted_score']:.4f}  (drop {sh['clean_score'] - sh['shifted_score']:+.4f} "
             f"from clean; see report.html)")
    echo("")
    width = max(len(n) for n in result.class_names) + 2
    echo(f"  {'class':<{width}} precision  recall     f1  support")
    for row in result.per_class:
        echo(f"  {row['name']:<{width}} {row['precision']:9.3f} {row['recall']:7.3f} {row['f1']:6.3f} "
             f"{row['support']:8d}")
    echo("")
    echo("  confusion matrix (rows: true, columns: predicted)")
    cm = result.confusion_matrix
    cw = max(4, max(len(str(v)) for r in cm for v in r) + 1)
    echo("  " + " " * 4 + "".join(f"{j:>{cw}}" for j in range(len(cm))))
    for i, r in enumerate(cm):
        echo(f"  {i:>3} " + "".join(f"{v:>{cw}}" for v in r))
    echo("")
    t = result.timings
    total = t.get("child_s", 0.0)
    frac = total / result.time_limit_s if result.time_limit_s else 0
    echo(f"  time: {total:.1f} s of the {result.time_limit_s:g} s limit ({frac:.0%})  "
         f"[import {t.get('import_s', 0):.1f} s, Model() {t.get('init_s', 0):.1f} s, "
         f"predict {t.get('predict_s', 0):.1f} s]")
    if result.peak_rss_mb:
        echo(f"  peak memory: {result.peak_rss_mb:.0f} MB")
    env = result.env
    vers = env.get("versions", {})
    echo(f"  environment: {env.get('name')} (python {env.get('python')}"
         + "".join(f", {k} {v}" for k, v in vers.items()) + ")"
         + ("; network cut" if result.network_isolated else "; network NOT isolated"))
    for w in result.warnings:
        click.secho(f"  warning: {w}", fg="yellow")
    echo(f"  run folder: {result.run_dir}")

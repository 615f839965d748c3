"""The ``mushra-web`` command: create tests, serve them, export results, write reports, manage admin users."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Optional

from sqlalchemy import select

from mushra_web.auth import AuthError
from mushra_web.db import AdminUser, Experiment, database_url, init_db, make_engine, session_factory
from mushra_web.schema import ConfigError


def _sessions(args: argparse.Namespace):
    engine = make_engine(args.db)
    init_db(engine)
    return session_factory(engine)


def _experiment(session, slug: str) -> Experiment:
    exp = session.scalar(select(Experiment).where(Experiment.slug == slug))
    if exp is None:
        raise ConfigError(f"no test with id {slug!r}")
    return exp


def cmd_create(args: argparse.Namespace) -> int:
    from mushra_web.ingest import config_from_run, create_experiment
    from mushra_web.schema import load_config

    rows_csv = None
    if args.run:
        if not args.id:
            raise ConfigError("--id is needed with --run")
        overrides: dict = {"design": {}}
        if args.items_per_participant:
            overrides["design"]["items_per_participant"] = args.items_per_participant
        if args.training_items:
            overrides["design"]["training_items"] = args.training_items.split(",")
        if args.crowd:
            overrides["crowd"] = {"platform": args.crowd, "complete_url": args.complete_url}
        if args.title:
            overrides["title"] = args.title
        if args.protocol:
            overrides["protocol"] = args.protocol
        cfg, rows_csv = config_from_run(args.run, args.id,
                                        conditions=args.conditions.split(",") if args.conditions else None,
                                        items=args.items.split(",") if args.items else None,
                                        excerpt_seconds=args.excerpt_seconds, sample_rate=args.sample_rate,
                                        overrides=overrides)
    elif args.config:
        cfg = load_config(args.config)
    else:
        raise ConfigError("give a YAML config or --run RUN_FOLDER")
    sessions = _sessions(args)
    with sessions() as session:
        exp = create_experiment(session, cfg, Path(args.data_dir),
                                source_run=str(Path(args.run).resolve()) if args.run else None,
                                objective_rows_csv=rows_csv)
        session.commit()
        print(f"created test {exp.slug!r}: {len(cfg.items)} items x {len(cfg.conditions)} conditions "
              f"+ anchors {cfg.anchors} + hidden reference={cfg.hidden_reference}, {cfg.sample_rate} Hz, "
              f"{exp.channels} ch; config sha256 {exp.config_sha256}")
        for note in exp.ingest_report.get("notes", []):
            print(f"  ingest: {note}")
        print(f"  anchors generated {exp.ingest_report['anchors_generated']}, "
              f"from cache {exp.ingest_report['anchors_cached']}")
        print(f"  participant link: /e/{exp.slug}"
              + (f"?{cfg.crowd.url_param}=..." if cfg.crowd.url_param else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    os.environ["MUSHRA_DATABASE_URL"] = database_url(args.db)
    os.environ["MUSHRA_DATA_DIR"] = str(Path(args.data_dir).resolve())
    os.environ["MUSHRA_SECURE_COOKIES"] = "1" if args.secure_cookies else "0"
    os.environ["MUSHRA_TEST_MODE"] = "1" if args.test_mode else "0"
    if args.workers > 1 and database_url(args.db).startswith("sqlite"):
        print("mushra-web: several workers on SQLite serialise every write; use PostgreSQL for hosting",
              file=sys.stderr)
    from mushra_web.auth import server_secret

    engine = make_engine(args.db)
    init_db(engine)  # tables and the URL-signing key are made before the workers start, so they never race
    with session_factory(engine)() as session:
        server_secret(session)
    engine.dispose()
    uvicorn.run("mushra_web.app:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                proxy_headers=args.proxy_headers, forwarded_allow_ips=args.forwarded_allow_ips,
                root_path=args.root_path, log_level=args.log_level)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mushra_web import export

    with _sessions(args)() as session:
        exp = _experiment(session, args.id)
        rows = export.export_rows(session, exp)
        out = Path(args.out or f"{exp.slug}-{exp.config_sha256[:12]}.{args.format}")
        if args.format == "csv":
            out.write_text(export.to_csv(rows))
        elif args.format == "parquet":
            out.write_bytes(export.to_parquet(rows, exp))
        else:
            out.write_text(json.dumps({"config_sha256": exp.config_sha256, "rows": rows}, indent=1))
    print(f"wrote {len(rows)} ratings to {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mushra_web.export import export_rows
    from mushra_web.report import build_report, report_html

    with _sessions(args)() as session:
        exp = _experiment(session, args.id)
        rep = build_report(export_rows(session, exp), exp)
    out = Path(args.out or f"report-{rep['experiment']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(rep, indent=1, default=str))
    (out / "report.html").write_text(report_html(rep))
    for name, view in rep["views"].items():
        print(f"{name}: N={view['n_participants']} assessors")
        for row in view["by_condition"]:
            clipped = " (clipped to 0-100)" if row["t_clipped"] else ""
            print(f"  {row['condition']:<28} mean {row['mean']:6.2f}  95% t [{row['t_low']:6.2f}, {row['t_high']:6.2f}]"
                  f"{clipped}  95% cluster-bootstrap [{row['boot_low']:6.2f}, {row['boot_high']:6.2f}]"
                  f"  n={row['n_ratings']}")
    print(f"wrote {out / 'report.html'} and {out / 'report.json'}")
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise AuthError("the passwords differ")
    return first


def cmd_admin(args: argparse.Namespace) -> int:
    from mushra_web import auth

    with _sessions(args)() as session:
        if args.action == "list":
            for user in session.scalars(select(AdminUser).order_by(AdminUser.username)):
                print(user.username)
            return 0
        if not args.username:
            raise AuthError(f"admin {args.action} needs a user name")
        if args.action == "add":
            auth.add_user(session, args.username, _password(args))
        elif args.action == "passwd":
            auth.set_password(session, args.username, _password(args))
        elif args.action == "remove":
            auth.remove_user(session, args.username)
        session.commit()
    print(f"admin {args.action} {args.username}: done")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from mushra_web.export import progress

    with _sessions(args)() as session:
        for exp in session.scalars(select(Experiment).order_by(Experiment.id)):
            info = progress(session, exp)
            print(f"{exp.slug}\t{exp.status}\tcompleted {info['participants_completed']}\t"
                  f"active {info['participants_active']}\ttrials submitted {info['trials_submitted']}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mushra-web", description=__doc__)
    ap.add_argument("--db", help="database URL (default $MUSHRA_DATABASE_URL or sqlite:///mushra.db); "
                                 "postgresql://user:pass@host/db for hosting")
    ap.add_argument("--data-dir", default=os.environ.get("MUSHRA_DATA_DIR", "mushra_data"),
                    help="where stimuli and cached anchors are stored (default $MUSHRA_DATA_DIR or ./mushra_data)")
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("create", help="create a test from a YAML config or an encodec-bench run folder")
    c.add_argument("config", nargs="?", help="YAML test config")
    c.add_argument("--run", help="encodec-bench run folder with kept audio")
    c.add_argument("--id", help="test id (slug) for --run")
    c.add_argument("--title")
    c.add_argument("--conditions", help="comma-separated codec specs (default: every one with audio)")
    c.add_argument("--items", help="comma-separated item ids (default: all)")
    c.add_argument("--excerpt-seconds", type=float, default=10.0, help="keep the first N seconds (default 10)")
    c.add_argument("--sample-rate", type=int, default=48000, help="rate the test plays at (default 48000)")
    c.add_argument("--items-per-participant", type=int)
    c.add_argument("--training-items", help="comma-separated item ids shown first as training")
    c.add_argument("--crowd", choices=["prolific", "mturk", "generic"])
    c.add_argument("--complete-url", help="redirect at the end, with {code} for the completion code")
    c.add_argument("--protocol", choices=["bs1534_3", "encodec_2022"],
                   help="settings of a published protocol; encodec_2022 (the EnCodec paper's) asks for at least one "
                        "rating of 100 per trial and screens by the paper's rule")
    c.set_defaults(func=cmd_create)

    s = sub.add_parser("serve", help="serve the tests over HTTP")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="worker processes (use PostgreSQL when > 1)")
    s.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure (behind TLS)")
    s.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from the reverse proxy")
    s.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    s.add_argument("--root-path", default="", help="URL prefix when served under a sub-path")
    s.add_argument("--test-mode", action="store_true", help="expose the audio tap used by the browser tests")
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=cmd_serve)

    e = sub.add_parser("export", help="export ratings as tidy CSV, Parquet or JSON")
    e.add_argument("id")
    e.add_argument("--format", choices=["csv", "parquet", "json"], default="csv")
    e.add_argument("--out")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="write the HTML and JSON report")
    r.add_argument("id")
    r.add_argument("--out")
    r.set_defaults(func=cmd_report)

    a = sub.add_parser("admin", help="manage admin users")
    a.add_argument("action", choices=["add", "passwd", "remove", "list"])
    a.add_argument("username", nargs="?")
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    a.set_defaults(func=cmd_admin)

    lst = sub.add_parser("list", help="list tests and their progress")
    lst.set_defaults(func=cmd_list)
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, AuthError) as exc:
        print(f"mushra-web: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

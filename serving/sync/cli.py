"""``python -m serving.sync``: argument parsing, logging, signals, exit codes.

Sync (the main form; these flags are a contract with the Kubernetes manifests)::

    python -m serving.sync --source s3://BUCKET/PREFIX --dest DIR --model NAME [--model NAME ...]
        [--policy latest:2|all|specific:3,4] [--interval SECONDS] [--once]
        [--endpoint-url URL] [--model-config-file FILE] [--status-file FILE]
        [--max-backoff SECONDS] [--max-attempts N] [--health-port PORT]
        [--metrics-port PORT] [--tfserving-url URL] [--load-timeout SECONDS]
        [--log-level LEVEL]

Probe (exec probes; TF Serving's image has no curl)::

    python -m serving.sync probe --tfserving-url http://127.0.0.1:8501 --model NAME ...
    python -m serving.sync probe --status-file FILE

Exit codes: 0 success or clean stop (SIGTERM/SIGINT); 1 ``--once`` could not make a version of
every model available, or a probe failed; 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.args import positive_float, positive_int
from contracts.rules import RuleError, validate_model_name
from contracts.store import StoreLocation, StoreURIError
from contracts.tfconfig import ConfigError, VersionPolicy

from .errors import SyncConfigError

_log = logging.getLogger("serving.sync")
EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2


def _policy(text: str) -> VersionPolicy:
    try:
        return VersionPolicy.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _model_name(text: str) -> str:
    # The names the store, the stack and TF Serving share (contracts.rules): a name no publish
    # can write is a typo, refused here (exit 2) rather than polled for ever.
    try:
        return validate_model_name(text)
    except RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def sync_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.sync",
        description="Bring committed model versions from S3 to a local TF Serving model "
        "directory: staged, verified, renamed into place. Subcommand: probe (see 'probe -h').",
    )
    parser.add_argument("--source", required=True, help="model store, s3://BUCKET/PREFIX")
    parser.add_argument("--dest", required=True, type=Path, help="local models directory")
    parser.add_argument(
        "--model",
        required=True,
        action="append",
        dest="models",
        type=_model_name,
        help="model name (repeatable)",
    )
    parser.add_argument(
        "--policy",
        type=_policy,
        help="latest[:N] | all | specific:V1,V2 (default: models.config's policy, else latest)",
    )
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=30.0,
        help="seconds between S3 listings (default 30; listings cost money)",
    )
    parser.add_argument("--once", action="store_true", help="sync once and exit (init container)")
    parser.add_argument("--endpoint-url", help="S3 endpoint (a loopback moto server in tests)")
    parser.add_argument(
        "--model-config-file",
        type=Path,
        help="TF Serving models.config: labelled versions are fetched too; re-read every cycle",
    )
    parser.add_argument("--status-file", type=Path, help="write status JSON here (atomically)")
    parser.add_argument(
        "--max-backoff",
        type=positive_float,
        default=300.0,
        help="upper bound of the retry backoff in seconds (default 300)",
    )
    parser.add_argument(
        "--max-attempts",
        type=positive_int,
        default=5,
        help="--once only: rounds of listing/fetching before giving up (default 5)",
    )
    parser.add_argument(
        "--health-port", type=int, default=0, help="serve /healthz /startupz /readyz (0: off)"
    )
    parser.add_argument("--health-host", default="0.0.0.0", help="health server bind address")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics (tfserving_sync_*) on /metrics here (0: off)",
    )
    parser.add_argument(
        "--tfserving-url",
        help="TF Serving REST base URL (GET /v1/models/NAME): an old version is retired only "
        "once the server reports its successor AVAILABLE, and /readyz requires every model "
        "AVAILABLE",
    )
    parser.add_argument(
        "--load-timeout",
        type=positive_float,
        default=600.0,
        help="with --tfserving-url: a version not reported AVAILABLE this many seconds after it "
        "was placed is marked failed and taken off the disk (default 600)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def probe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.sync probe",
        description="Exit 0 if ready: TF Serving reports every --model AVAILABLE (with "
        "--tfserving-url), and/or the agent's status file says every model has a version.",
    )
    parser.add_argument("--tfserving-url", help="TF Serving REST base URL")
    parser.add_argument("--model", action="append", dest="models", default=[])
    parser.add_argument("--status-file", type=Path)
    parser.add_argument("--timeout", type=positive_float, default=2.0)
    return parser


def probe(argv: Sequence[str]) -> int:
    from .health import all_available

    parser = probe_parser()
    args = parser.parse_args(argv)
    if not args.tfserving_url and not args.status_file:
        parser.error("give --tfserving-url (with --model) and/or --status-file")
    if args.tfserving_url and not args.models:
        parser.error("--tfserving-url needs at least one --model")
    if args.status_file:
        try:
            status = json.loads(args.status_file.read_text())
        except (OSError, ValueError) as exc:
            print(f"not ready: status file {args.status_file}: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        if status.get("ready") is not True:
            print("not ready: a model has no version in place yet", file=sys.stderr)
            return EXIT_UNAVAILABLE
    if args.tfserving_url:
        ok, reason = all_available(args.tfserving_url, args.models, args.timeout)
        if not ok:
            print(f"not ready: {reason}", file=sys.stderr)
            return EXIT_UNAVAILABLE
    return EXIT_OK


def make_s3_client(endpoint_url: str | None) -> object:
    import boto3
    from botocore.config import Config

    # botocore's "standard" mode retries throttling and transient errors with its own jittered
    # backoff; the agent's backoff sits on top for longer outages. Timeouts keep a dead
    # connection from hanging a download forever.
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=16,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def _explain_empty_prefixes(agent: Any, config: Any) -> None:
    """After --once: name each model whose store prefix was listed and holds no committed version
    (the usual first-run mistake: nothing published yet, or a different --source prefix)."""
    for name in config.models:
        if name in agent.committed and not agent.committed[name]:
            where = f"{config.source.uri}/{name}/"
            _log.error(
                "nothing is committed under %s (no version with a manifest.json and all its "
                "files): publish one first (python -m model publish --export DIR/%s/<version> "
                "--store %s) or check --source",
                where,
                name,
                config.source.uri,
            )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["probe"]:
        return probe(argv[1:])
    args = sync_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .agent import Agent, AgentConfig
    from .health import HealthServer
    from .status import StatusBoard

    try:
        config = AgentConfig(
            source=StoreLocation.parse(args.source),
            dest=args.dest,
            models=tuple(args.models),
            policy=args.policy,
            interval=args.interval,
            model_config_file=args.model_config_file,
            max_backoff=args.max_backoff,
            max_attempts=args.max_attempts,
            tfserving_url=args.tfserving_url,
            load_timeout=args.load_timeout,
        )
        if config.model_config_file is not None and not config.model_config_file.is_file():
            raise SyncConfigError(f"--model-config-file {config.model_config_file} does not exist")
        status = StatusBoard(args.status_file, config.source.uri, config.dest, config.models)
        agent = Agent(config, make_s3_client(args.endpoint_url), status)
        agent.prepare()
    except (SyncConfigError, StoreURIError) as exc:
        _log.error("%s", exc)
        return EXIT_USAGE

    def request_stop(signum: int, _frame: object) -> None:
        _log.info("%s received: stopping", signal.Signals(signum).name)
        agent.stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)

    health = metrics_server = None
    if args.metrics_port:
        metrics_server, port = agent.metrics.serve(args.metrics_port, args.health_host)
        _log.info("Prometheus metrics on %s:%d/metrics", args.health_host, port)
    if args.health_port:
        health = HealthServer(
            status, args.health_port, args.health_host, args.tfserving_url, config.models
        ).start()
        _log.info("health endpoints on %s:%d", args.health_host, health.port)
    try:
        if args.once:
            code = agent.run_once()
            _explain_empty_prefixes(agent, config)
            return code
        agent.run()
        return EXIT_OK
    finally:
        if health is not None:
            health.close()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        agent.status.write()
        for signum, handler in previous.items():  # matters when main() runs inside a test
            signal.signal(signum, handler)

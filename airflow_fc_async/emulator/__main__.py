"""``fc-emulator`` / ``python -m airflow_fc_async.emulator``: serve FC 3.0 + MNS locally until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from airflow_fc_async.emulator.app import Emulator
from airflow_fc_async.emulator.config import ConfigError
from airflow_fc_async.emulator.settings import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_PORT,
    DEFAULT_REGION,
    MAX_BODY_BYTES,
    Settings,
)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fc-emulator", description=__doc__)
    p.add_argument(
        "--config", action="append", default=[], metavar="S_YAML", help="Serverless Devs s.yaml (repeatable)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    p.add_argument("--region", default=DEFAULT_REGION)
    p.add_argument("--access-key-id", default=DEFAULT_ACCESS_KEY_ID, help="development default: %(default)s")
    p.add_argument(
        "--access-key-secret",
        default=DEFAULT_ACCESS_KEY_SECRET,
        help="development default (documented, never valid on Alibaba Cloud)",
    )
    p.add_argument("--security-token", default=None, help="accept this STS token")
    p.add_argument(
        "--max-instances", type=int, default=8, help="instances per function (default %(default)s)"
    )
    p.add_argument("--retry-delay", type=float, default=1.0, help="seconds before an async retry")
    p.add_argument(
        "--base64-destinations", action="store_true", help="base64-encode destination records in MNS"
    )
    p.add_argument(
        "--admin-token",
        default=None,
        help="the /_emulator/ admin token (default: a new random one per start)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="serve this Host name too (IP addresses and localhost always are; repeatable)",
    )
    p.add_argument("--max-body-mb", type=float, default=MAX_BODY_BYTES / 2**20, help="request body cap")
    p.add_argument("--request-timeout", type=float, default=60.0, help="socket read timeout, seconds")
    p.add_argument("--max-connections", type=int, default=512, help="connections served at once")
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(
        host=args.host,
        port=args.port,
        account_id=args.account_id,
        region=args.region,
        access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret,
        security_token=args.security_token,
        max_instances=args.max_instances,
        retry_delay=args.retry_delay,
        base64_destinations=args.base64_destinations,
        allowed_hosts=tuple(args.allow_host),
        max_body_bytes=int(args.max_body_mb * 2**20),
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
    )
    if args.admin_token:
        settings.admin_token = args.admin_token
    try:
        emulator = Emulator(args.config, settings=settings)
        emulator.start()
    except ConfigError as exc:
        print(f"fc-emulator: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fc-emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def _stop(signum: int, frame: FrameType | None) -> None:
        emulator.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(emulator.ready_line(), flush=True)
    emulator.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

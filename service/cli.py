"""``tempo``: ``serve`` (the gateway), ``worker`` (a model worker), ``ask`` (one-shot local answer).

Flags override the ``TEMPO_*`` environment; both feed the one ``Settings`` class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.settings import Settings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", dest="redis_url", help="TEMPO_REDIS_URL")
    p.add_argument("--storage-dir", dest="storage_dir", type=Path, help="TEMPO_STORAGE_DIR")
    p.add_argument("--log-level", dest="log_level", help="TEMPO_LOG_LEVEL")
    p.add_argument("--log-json", dest="log_json", action="store_const", const=True, help="TEMPO_LOG_JSON")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tempo", description="Tempo Serve: long-video question answering")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP gateway")
    _common(serve)
    serve.add_argument("--host", dest="host", help="TEMPO_HOST")
    serve.add_argument("--port", dest="port", type=int, help="TEMPO_PORT (default 8000)")
    serve.add_argument("--api-keys", dest="api_keys", help="TEMPO_API_KEYS, comma-separated")

    worker = sub.add_parser("worker", help="run a model worker")
    _common(worker)
    worker.add_argument("--model-path", dest="model_path", type=Path, help="TEMPO_MODEL_PATH (unset: tiny test model)")
    worker.add_argument("--svlm-path", dest="svlm_path", type=Path, help="TEMPO_SVLM_PATH")
    worker.add_argument("--device", dest="device", help="TEMPO_DEVICE: auto | cpu | cuda | cuda:N")
    worker.add_argument("--worker-id", dest="worker_id", help="TEMPO_WORKER_ID (default: host-pid-random)")
    worker.add_argument("--metrics-port", dest="worker_metrics_port", type=int,
                        help="TEMPO_WORKER_METRICS_PORT (default 9100; 0 = any free port; -1 = off)")
    worker.add_argument("--ask-batch-size", dest="ask_batch_size", type=int, help="TEMPO_ASK_BATCH_SIZE")
    worker.add_argument("--ingest-batch-size", dest="ingest_batch_size", type=int, help="TEMPO_INGEST_BATCH_SIZE")

    ask = sub.add_parser("ask", help="answer one question about a local video file (no server)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ask"]:
        from models import ask_cli  # imported only for `tempo ask`

        ask_cli.add_arguments(ask)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    skip = {"command"}
    overrides = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    if args.command == "ask":
        from models import ask_cli

        return ask_cli.run(args)
    settings = settings_from(args)
    from service.logs import setup_logging

    setup_logging(settings.log_level, settings.log_json)
    if args.command == "serve":
        import uvicorn

        from service.app import create_app

        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                    access_log=False)
        return 0
    from workers.loop import main as worker_main  # imports torch, only in the worker

    return worker_main(settings)


if __name__ == "__main__":
    sys.exit(main())

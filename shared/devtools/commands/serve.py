"""`crmflow serve [--port 7071]`: the local Functions host over the local stack (Azurite started when needed)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from shared.devtools.commands._local import local_stack


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the app's functions locally (HTTP on 127.0.0.1, timers, queue triggers)",
        description="Runs every function registered on function_app.py's FunctionApp: HTTP routes under /api, "
                    "timer triggers on their UTC schedules, Service Bus queue triggers fed by the local broker. "
                    "Starts Azurite when TABLES_CONNECTION_STRING is not set. Ctrl-C stops.")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (default 7071)")
    parser.add_argument("--queue-workers", type=int, default=1, metavar="N",
                        help="concurrent invocations per queue trigger (default 1)")
    parser.add_argument("--app", default="function_app:app", help=argparse.SUPPRESS)  # module:attribute (tests)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from devhost import LocalHost  # imports azure.functions: only for this command

    module_name, _, attribute = args.app.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    for package in ("shared", "functions", "devhost"):  # the app's loggers are named after their modules
        logging.getLogger(package).setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    with local_stack() as container:
        host = LocalHost(app, container, port=args.port, queue_workers=args.queue_workers)
        try:
            host.start()
            print(f"crmflow local host on {host.url} (broker: {container.settings.broker}); Ctrl-C stops",
                  file=sys.stderr)
            for line in host.routes():
                print(f"  {line}", file=sys.stderr)
            if not host.functions_key:
                print("  FUNCTIONS_KEY is empty: function-level routes need no key here (only loopback Host names "
                      "are answered)", file=sys.stderr)
            sys.stderr.flush()
            host.serve_forever()
        except KeyboardInterrupt:
            pass  # Ctrl-C is how the local host ends, also while it is still starting: a clean stop, not an error
        finally:
            host.stop()
            container.broker.close()
    print("stopped", file=sys.stderr)
    return 0

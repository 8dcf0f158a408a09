"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

import sys

from gurugrow import ConfigError, create_app

try:
    app = create_app()
except ConfigError as e:  # one clear line instead of a traceback
    print(f"gurugrow: configuration error: {e}", file=sys.stderr)
    sys.exit(1)

"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

import os
import sys

from gurugrow import ConfigError, create_app, create_cli_app
from gurugrow.config import config_error_lines

try:
    app = create_app()
except ConfigError as e:
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        # `flask --app wsgi gurugrow …`: --help and the doctor work on any configuration.
        app = create_cli_app()
    else:  # every problem, one line each, instead of a traceback
        print("\n".join(config_error_lines(e, env_file_exists=os.path.exists(".env"))),
              file=sys.stderr)
        sys.exit(1)

"""`flask --app wsgi gurugrow …`: commands for the people who run the service."""

from __future__ import annotations

from flask.cli import AppGroup

cli = AppGroup("gurugrow", help="Operate gurugrow: check and prepare a configuration.")

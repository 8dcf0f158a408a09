"""`flask --app wsgi gurugrow …`: commands for the people who run the service."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup

from gurugrow.basics.phone import mask_phone, normalize_phone
from gurugrow.config import CHANNELS, ENV_FILE, ConfigError, config_error_lines, config_problems
from gurugrow.doctor.checks import Check, FieldSpec, run_doctor
from gurugrow.doctor.fields import create_missing_fields
from gurugrow.doctor.redaction import safe_url
from gurugrow.flows.deliveries_worker import run_worker
from gurugrow.flows.mirror_worker import run_mirror

if TYPE_CHECKING:
    from gurugrow.basics.identity import MessengerIdentity
    from gurugrow.services import Services

cli = AppGroup("gurugrow", help="Operate gurugrow: check and prepare a configuration, "
                                "run the deliveries worker and the RetailCRM mirror.")


def _print_all(checks: Iterable[Check]) -> bool:
    """Print each check's line as it completes; True when every one passed."""
    all_ok = True
    for check in checks:
        click.echo(check.line())
        all_ok = all_ok and check.ok
    return all_ok


def _until_signal(run: Callable[[threading.Event], dict[str, int]]) -> dict[str, int]:
    """``run(stop)`` with SIGTERM/SIGINT setting ``stop`` (the work in hand finishes)."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run(stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@cli.command("doctor")
def doctor() -> None:
    """Check the configuration against Redis, RetailCRM, GreenSMS and the deduper.

    One line per check (ok / FAIL … — fix: …); exit status 0 only if all passed.
    """
    svc = current_app.extensions["gurugrow"]
    checks = run_doctor(svc, config_problems(current_app),
                        env_file_exists=os.path.exists(ENV_FILE))
    raise SystemExit(0 if _print_all(checks) else 1)


def _configured_services():
    """The process's services; a configuration a start would refuse stops the command
    with every problem, one line each."""
    problems = config_problems(current_app)
    if problems:
        lines = config_error_lines(ConfigError(problems),
                                   env_file_exists=os.path.exists(ENV_FILE))
        click.echo("\n".join(lines), err=True)
        raise SystemExit(1)
    return current_app.extensions["gurugrow"]


@cli.command("create-fields")
@click.option("--yes", is_flag=True, help="Create the missing fields without asking.")
def create_fields(yes: bool) -> None:
    """Create the customer custom fields the settings name and RetailCRM lacks.

    Fields are type String, shown under Main data. Exit status 0 only if every field
    exists afterwards.
    """
    svc = _configured_services()

    def confirm(missing: list[FieldSpec]) -> bool:
        if yes:
            return True
        codes = ", ".join(spec.code for spec in missing)
        where = safe_url(svc.settings.retailcrm_base_url)
        return click.confirm(f"Create {len(missing)} customer custom field(s) in {where}: "
                             f"{codes}?", default=False)

    raise SystemExit(0 if _print_all(create_missing_fields(svc, confirm)) else 1)


@cli.command("clear-phone")
@click.argument("phone")
def clear_phone(phone: str) -> None:
    """Clear one phone's code counters (this hour's and today's), so its owner can ask
    for a code at once: others' messenger accounts can spend a phone's caps.

    Cooldowns (one minute per messenger account) and the per-account caps stay
    (`account clear <channel> <id>` lifts an account's).
    """
    normalized = normalize_phone(phone)
    if normalized is None:
        raise click.BadParameter("not a phone number", param_hint="PHONE")
    svc = current_app.extensions["gurugrow"]
    cleared = svc.limits.clear_phone(normalized)
    click.echo(f"cleared {cleared} code counter(s) of {mask_phone(normalized)}")


@cli.command("deliveries")
@click.option("--once", is_flag=True, help="One pass over the due checks, then exit.")
@click.option("--max-seconds", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: run until stopped).")
def deliveries(once: bool, max_seconds: float | None) -> None:
    """Watch messenger code sends; one not delivered in time gets a fresh code by SMS.

    Optional (the API works without it). Run one or more anywhere that reaches Redis and
    GreenSMS: each due send is claimed by one worker only. SIGTERM/SIGINT finish the
    check in hand, then stop.
    """
    svc = _configured_services()
    totals = _until_signal(lambda stop: run_worker(svc, once=once, max_seconds=max_seconds,
                                                   stop=stop))
    click.echo(" ".join(f"{outcome}={count}" for outcome, count in sorted(totals.items()))
               or "no sends were due")


@cli.command("mirror")
@click.option("--once", is_flag=True, help="One sync pass (a full load if needed), then exit.")
@click.option("--max-seconds", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: run until stopped).")
def mirror(once: bool, max_seconds: float | None) -> None:
    """Keep the RetailCRM mirror current: a full load, then RetailCRM's history every
    MIRROR_POLL_SECONDS (needs CRM_MIRROR=1).

    Run one or more anywhere that reaches Redis and RetailCRM: one holds the lease and
    polls, the others stand by. SIGTERM/SIGINT finish the pass in hand, then stop.
    """
    svc = _configured_services()
    if svc.mirror is None:
        click.echo("CRM_MIRROR is off: set CRM_MIRROR=1 to run the mirror", err=True)
        raise SystemExit(2)
    totals = _until_signal(lambda stop: run_mirror(
        svc, once=once, max_seconds=max_seconds, stop=stop,
        progress=lambda line: click.echo(f"mirror load: {line}")))
    click.echo(" ".join(f"{outcome}={count}" for outcome, count in sorted(totals.items())))


@cli.command("texts")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write to this file (default: print).")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
def texts_command(output: str | None, force: bool) -> None:
    """Write every bot text as it is now (TEXTS_FILE applied) as a TOML file: edit it,
    keep what you change, and set TEXTS_FILE to it."""
    from gurugrow.basics.shop import texts_toml

    content = texts_toml()
    if output is None:
        click.echo(content, nl=False)
        return
    if os.path.exists(output) and not force:
        click.echo(f"{output} exists: pass --force to overwrite it", err=True)
        raise SystemExit(1)
    with open(output, "w", encoding="utf-8") as f:
        f.write(content)
    click.echo(f"wrote the bot texts to {output}: edit it, then set TEXTS_FILE={output}")


account = AppGroup("account", help="One messenger account: see what the service knows, "
                                   "unbind it, lift its caps.")
cli.add_command(account)
CHANNEL_ARG = click.Choice(CHANNELS, case_sensitive=False)


def _on_account(action: Callable[[Services, MessengerIdentity], list[str]], channel: str,
                account_id: str) -> None:
    """Run ``action`` on the account and print what it did, one line each."""
    from gurugrow.basics.identity import identity_for

    svc = _configured_services()
    click.echo("\n".join(action(svc, identity_for(channel.lower(), account_id,
                                                  svc.settings))))


def _account_arguments(command: Callable[[str, str], None]) -> Callable[[str, str], None]:
    return click.argument("channel", type=CHANNEL_ARG)(click.argument("account_id")(command))


@account.command("show")
@_account_arguments
def account_show(channel: str, account_id: str) -> None:
    """What the service knows about one messenger account: its binding (customer, masked
    phone, last verification and method), cache and mirror, counters and lockout."""
    from gurugrow.flows.accounts import show_account

    _on_account(show_account, channel, account_id)


@account.command("unbind")
@_account_arguments
def account_unbind(channel: str, account_id: str) -> None:
    """Unbind one messenger account: clears RetailCRM's field of every customer holding
    it, the cached binding and the mirror's (the bot asks for the phone again)."""
    from gurugrow.flows.accounts import unbind_account

    _on_account(unbind_account, channel, account_id)


@account.command("clear")
@_account_arguments
def account_clear(channel: str, account_id: str) -> None:
    """Lift one messenger account's caps: its codes this hour and today, wrong codes and
    lockout (`clear-phone` does the phone's)."""
    from gurugrow.flows.accounts import clear_account

    _on_account(clear_account, channel, account_id)

"""Command line: ``inbox-guard [--config PATH] [--debug] COMMAND``.

Exit status: 0 success; 2 configuration error; 3 cannot connect or log in; 1 anything
else. Errors are one line on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__
from .errors import BusyError, ConfigError, InboxGuardError

if TYPE_CHECKING:  # imported by each command when it runs: `--help` stays quick
    from .model import Settings

log = logging.getLogger("inbox_guard")


class _State:
    def __init__(self, config: str | None, account: str | None, debug: bool) -> None:
        self.config = config
        self.account = account
        self.debug = debug

    def settings(self) -> Settings:
        """The one practitioner a command is for."""
        from .config import load

        return load(self.config, self.account)

    def practices(self) -> list[Settings]:
        """Every practitioner the config names (or the one --account picks)."""
        from .config import load_all

        if self.account is not None:
            return [self.settings()]
        return load_all(self.config)


def _load(state: _State, now: str | None, notes: list[str]) -> tuple[Settings, datetime]:
    """Settings (with calendar sessions, if a calendar is configured) and the clock;
    trouble worth telling the next digest is added to ``notes``."""
    from .ics import with_calendar

    settings = state.settings()
    clock = _parse_now(now, settings)
    return with_calendar(settings, clock, note=notes.append), clock


def _parse_now(value: str | None, settings: Settings) -> datetime:
    if value is None:
        return datetime.now(UTC).astimezone(settings.tz)
    from .hours import DATE_RANGE, in_range

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not ISO 8601 (like 2026-11-17T06:00:00+00:00)", param_hint="--now"
        ) from None
    if not in_range(parsed.date()):
        raise click.BadParameter(f"{value!r} is out of range ({DATE_RANGE})", param_hint="--now")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=settings.tz)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    metavar="PATH",
    help="Main config file, or a folder of them (default: $INBOX_GUARD_CONFIG, else "
    "config/inbox-guard.toml).",
)
@click.option(
    "--account",
    "account",
    metavar="ID",
    help="In a group practice ([[accounts]] or a folder), the practitioner to act for.",
)
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks on errors.")
@click.version_option(__version__, prog_name="inbox-guard")
@click.pass_context
def cli(ctx: click.Context, config: str | None, account: str | None, debug: bool) -> None:
    """Holds the frame when clients email out of hours.

    Marks out-of-hours mail from known clients, saves a neutral holding reply as a
    draft (it never sends anything to a client), and notes the contact on the
    client's next-session agenda.
    """
    ctx.obj = _State(config, account, debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        # The sign-in libraries' HTTP retries are theirs to report only with --debug:
        # what failed in the end is our one line.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        logging.getLogger("msal").setLevel(logging.CRITICAL)


@cli.command()
@click.option("--connect", is_flag=True, help="Also log in and report the inbox and Drafts folder.")
@click.option("--now", metavar="ISO", help="Clock for the next-session listing.")
@click.pass_obj
def check(state: _State, connect: bool, now: str | None) -> None:
    """Validate the config and every client file; list clients and next sessions.

    In a group practice, every practitioner (or the one --account names)."""
    from . import opening, report
    from .ics import with_calendar

    for settings in state.practices():
        clock = _parse_now(now, settings)
        settings = with_calendar(settings, clock)
        for line in report.config_lines(settings, clock, signin=not connect):
            click.echo(line)
        if connect:
            with opening.session(settings, dry_run=True) as (mailbox, _store):
                for line in report.server_lines(settings, mailbox):
                    click.echo(line)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Change nothing anywhere; report what would be done.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--now", metavar="ISO", help="Clock for next-session choice (ISO 8601).")
@click.pass_obj
def once(state: _State, dry_run: bool, as_json: bool, now: str | None) -> None:
    """Run one triage pass, then exit."""
    from . import opening, report
    from .triage import run_pass

    notes: list[str] = []
    settings, clock = _load(state, now, notes)
    try:
        with opening.session(settings, dry_run) as (mailbox, store):
            result = run_pass(settings, mailbox, store, clock, dry_run=dry_run)
    except BusyError:
        raise  # not trouble: another inbox-guard is doing this pass
    except InboxGuardError as exc:
        notes.append(f"triage: {exc}")
        raise
    finally:
        if not dry_run:
            opening.remember(settings, notes, clock)
    if as_json:
        click.echo(json.dumps(result.as_json(), ensure_ascii=False))
        return
    prefix = "would flag" if dry_run else "flagged"
    click.echo(
        f"scanned {result.scanned}; {prefix} {len(result.flagged)}; "
        f"ignored {len(result.ignored)}; errors {len(result.errors)}"
    )
    for f in result.flagged:
        click.echo(f"  {report.flagged_line(f, result.errors, settings, dry_run)}")
    for i in result.ignored:
        click.echo(f"  uid {i['uid']}  {i['client']}  ignored: {i['reason']}")
    for e in result.errors:
        click.echo(f"  uid {e['uid']}  error: {e['error']}")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print the digest instead of delivering it.")
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --dry-run: also write the HTML part to FILE, to open in a browser.",
)
@click.option("--now", metavar="ISO", help="Clock for the digest (ISO 8601).")
@click.pass_obj
def digest(state: _State, dry_run: bool, html_file: Path | None, now: str | None) -> None:
    """Build the digest of everything since the last one, and deliver it now."""
    from . import opening

    if html_file is not None and not dry_run:
        raise click.UsageError(
            "--html goes with --dry-run (a delivered digest is in your inbox already)"
        )
    from . import report
    from .digest import run_digest
    from .store import Store

    notes: list[str] = []
    settings, clock = _load(state, now, notes)
    if not dry_run:
        opening.remember(settings, notes, clock)  # a calendar fetch that failed: in this digest
    if settings.main.digest.deliver == "imap" and not dry_run:
        with opening.session(settings, dry_run=False) as (mailbox, store):
            run = run_digest(settings, mailbox, store, clock, dry_run=False)
    else:  # a connection only to see which holding replies are still in Drafts
        store = Store.snapshot_for(settings) if dry_run else Store.open_for(settings)
        try:
            with opening.looking(settings, lambda note: click.echo(note, err=True)) as looking:
                run = run_digest(settings, looking, store, clock, dry_run=dry_run)
        finally:
            store.close()
    if run.message is None:
        click.echo("nothing to report since the last digest (digest.send_empty is off)")
        return
    if dry_run:
        click.echo(report.message_text(run.message))
        if html_file is not None:
            from .files import write_private

            html = run.message.get_body(preferencelist=("html",))
            write_private(html_file, html.get_content() if html is not None else "")
            click.echo(f"\n(the HTML part is in {html_file})", err=True)
        return
    click.echo(f"digest delivered to {settings.digest_to} ({run.digest.count} contacts)")


@cli.command(name="brief")
@click.argument("client_id", required=False)
@click.option("--dry-run", is_flag=True, help="Print the brief(s) instead of delivering them.")
@click.option("--now", metavar="ISO", help="Clock for which session is next (ISO 8601).")
@click.pass_obj
def brief_command(state: _State, client_id: str | None, dry_run: bool, now: str | None) -> None:
    """Show and deliver (unless --dry-run) the brief for each client's next session;
    one delivered now is not sent again at its time, and a client with no out-of-hours
    contact since their previous session gets none."""
    from . import opening, report
    from .brief import next_brief, send_brief

    settings, clock = _load(state, now, [])
    if client_id is not None and client_id not in settings.clients:
        raise ConfigError(f"no client {client_id!r} in {settings.clients_dir}")
    chosen = [c for c in settings.clients.values() if c.active and client_id in (None, c.id)]
    with opening.session(settings, dry_run) as (mailbox, store):
        for client in chosen:
            session, found = next_brief(settings, client, store, clock)
            at = f"{session:%a %d %b %H:%M}" if session else ""
            if found is None:
                why = f"no out-of-hours contact before {at}" if at else "no session scheduled"
                click.echo(f"{client.id}: {why}, so no brief")
                continue
            message = send_brief(settings, mailbox, store, found, clock, dry_run)
            if message is None:
                click.echo(f"{client.id}: the brief for the session {at} was delivered before")
            elif dry_run:
                click.echo(report.message_text(message) + "\n")
            else:
                click.echo(
                    f"{client.id}: brief for the session {at} delivered to {settings.digest_to}"
                )


@cli.command(name="run")
@click.option("--workers", type=click.IntRange(1, 256), help="Jobs at once [4 each, up to 32].")
@click.option("--logins-at-once", type=click.IntRange(1, 100), help="IMAP logins at once [10].")
@click.pass_obj
def run_service(state: _State, workers: int | None, logins_at_once: int | None) -> None:
    """Run the background service: passes every poll_minutes, the digest on schedule.

    In a group practice, one service per practitioner (or the one --account names),
    sharing the workers, logins paced (at most 50 a second); with [state] url, all
    the run processes on that PostgreSQL share the practitioners between them."""
    from .run import serve

    serve(state.practices(), workers, logins_at_once, debug=state.debug)


@cli.command()
@click.argument("client_id", required=False)
@click.option("--now", metavar="ISO", help="Clock for what counts as upcoming.")
@click.pass_obj
def agenda(state: _State, client_id: str | None, now: str | None) -> None:
    """Print the upcoming agenda notes (all clients, or CLIENT-ID)."""
    from . import agenda as agenda_files

    settings = state.settings()
    if client_id is not None and client_id not in settings.clients:
        raise ConfigError(f"no client {client_id!r} in {settings.clients_dir}")
    today = _parse_now(now, settings).astimezone(settings.tz).date()
    files = agenda_files.upcoming(settings.agenda_dir, client_id, today)
    if not files:
        click.echo("no upcoming agenda notes")
    for f in files:
        click.echo(f.read_text(encoding="utf-8").rstrip() + "\n")


@cli.command()
@click.option(
    "--no-browser",
    is_flag=True,
    help="Google: print the sign-in address instead of opening a browser "
    "(for a server over SSH); paste the address the browser ends on.",
)
@click.pass_obj
def login(state: _State, no_browser: bool) -> None:
    """Sign in to Google or Microsoft (auth = "oauth2") and keep the tokens.

    Microsoft: prints an address and a code to enter in any browser (it works over
    SSH). Google: opens the browser at Google's sign-in page, which sends the answer
    back to this machine; with --no-browser it prints the address instead. The tokens
    are kept beside the state file (owner-only) or in the OS keyring, and renewed
    automatically; run login again only when told the sign-in has expired."""
    from .signin import login as sign_in

    settings = state.settings()
    account = settings.main.account
    if account.auth != "oauth2":
        raise ConfigError(
            f"{settings.path}: account.auth is {account.auth!r}: `login` is for "
            'auth = "oauth2" (with provider = "google" or "microsoft")'
        )
    status = sign_in(settings, lambda text: click.echo(text), browser=not no_browser)
    click.echo(f"Signed in as {status.who} ({status.provider}); tokens kept in {status.where}.")
    if status.who.lower() != account.username.lower() and status.who != "(not said)":
        click.echo(
            f"Note: account.username is {account.username}; the server accepts the "
            "sign-in only if that mailbox is yours or shared with you.",
            err=True,
        )


@cli.command(name="thunderbird-tags")
@click.pass_obj
def thunderbird_tags(state: _State) -> None:
    """Print the Thunderbird preferences (user.js lines) that show the marks as tags.

    Thunderbird shows an IMAP keyword as a tag only once a tag with that key (the
    keyword, lower case) is defined. Put these lines in user.js in your Thunderbird
    profile folder while Thunderbird is closed (Help > Troubleshooting Information >
    Profile Folder), then start it again."""
    from . import report

    for line in report.thunderbird_lines(state.settings()):
        click.echo(line)


@cli.command()
@click.option(
    "--keep",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's config, state and agenda files in DIR.",
)
def demo(keep: Path | None) -> None:
    """Show inbox-guard working on a sample practice; needs no account or config."""
    from . import demo as demo_mod

    demo_mod.main(keep, click.echo)


def _one_line(exc: click.ClickException) -> str:
    """A usage mistake as one line, pointing at the help of the command concerned."""
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    where = ctx.command_path if ctx is not None else "inbox-guard"
    message = " ".join(exc.format_message().split()).removesuffix(".")
    return f"inbox-guard: error: {message} (see {where} --help)"


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="inbox-guard", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("inbox-guard: aborted", err=True)
        return 1
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # the help, as asked for
        return 2
    except click.ClickException as exc:
        click.echo(_one_line(exc), err=True)
        return 2
    except InboxGuardError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"inbox-guard: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if debug:
            traceback.print_exc()
        click.echo(
            f"inbox-guard: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for details)",
            err=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

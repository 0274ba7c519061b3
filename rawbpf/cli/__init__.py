"""The ``rawbpf`` command line: a thin click layer that parses, calls the library and formats.

Every :class:`~rawbpf.errors.RawBPFError` becomes one line on stderr and exit status 1 (``--verbose`` adds the
detail, e.g. the full verifier log); usage errors exit 2. Every command ends quietly, as coreutils commands
do, when its reader leaves (SIGPIPE, 141) or on Ctrl-C (SIGINT, 130): :mod:`rawbpf.cli.ending`.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any, List, Optional

import click

from rawbpf import __version__
from rawbpf.cli.ending import die_of, flush_stdout
from rawbpf.errors import KernelRefusal, RawBPFError

__tier__ = "kernel"

_COMMANDS = {
    # name: (module, attribute)
    "load": ("rawbpf.cli.load", "load"),
    "tail": ("rawbpf.cli.tail", "tail"),
    "status": ("rawbpf.cli.status", "status"),
    "ship": ("rawbpf.cli.ship", "ship"),
    "inspect": ("rawbpf.cli.inspect", "inspect"),
    "disasm": ("rawbpf.cli.inspect", "disasm"),
    "doctor": ("rawbpf.cli.doctor", "doctor"),
    "sessions": ("rawbpf.cli.report", "sessions"),
    "report": ("rawbpf.cli.report", "report"),
}


class _Stopped(Exception):
    """A command was stopped by a signal (Ctrl-C, or its reader left); carried past click, which would
    otherwise print "Aborted!" or turn it into status 1."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so ``rawbpf tail`` never imports the loader."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name not in _COMMANDS:
            return None
        import importlib

        module, attr = _COMMANDS[cmd_name]
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        if not any(p.name == "verbose" for p in cmd.params):  # `rawbpf tail -v` as well as `rawbpf -v tail`
            cmd.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False,
                                           callback=_verbose_after, help="Same as rawbpf --verbose."))
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Stopped(signal.SIGINT) from None
        except BrokenPipeError:
            raise _Stopped(signal.SIGPIPE) from None


def _verbose_after(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["verbose"] = True
        logging.getLogger().setLevel(logging.DEBUG)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show details: full verifier logs, debug logging.")
@click.version_option(version=__version__, prog_name="rawbpf")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """rawbpf: load BPF objects, consume their ring buffers, audit what Claude Code does."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="rawbpf: %(levelname)s: %(message)s",
    )


def main(argv: Optional[List[str]] = None) -> Any:
    """Entry point: run the CLI, turning rawbpf errors into one line and exit status 1."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="rawbpf", standalone_mode=False)
        flush_stdout()  # a reader that left before the last buffered lines: SIGPIPE, not a traceback at exit
        return rv
    except _Stopped as stop:
        die_of(stop.signum)
    except click.exceptions.Abort as err:
        if isinstance(err.__cause__, KeyboardInterrupt):  # Ctrl-C while click itself was parsing
            die_of(signal.SIGINT)
        click.echo("rawbpf: aborted", err=True)
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except RawBPFError as err:
        _report(err, verbose)
        sys.exit(1)
    except KeyboardInterrupt:
        die_of(signal.SIGINT)
    except BrokenPipeError:
        die_of(signal.SIGPIPE)


def _report(err: RawBPFError, verbose: bool) -> None:
    """One line on stderr; a kernel refusal with a log (verifier, BTF) adds the log's tail (all of it with
    --verbose)."""
    from rawbpf.termsafe import escape  # only on this path: a command that succeeds never needs it

    if verbose:
        text = "\n".join(escape(line, backslash=False) for line in err.detail().splitlines())
        click.echo(f"rawbpf: {text}", err=True)
        return
    click.echo(f"rawbpf: {escape(err.summary(), backslash=False)}", err=True)  # names from files, kernels
    refusal = err if isinstance(err, KernelRefusal) else err.__cause__
    if isinstance(refusal, KernelRefusal) and refusal.log.strip():
        for line in refusal.tail().splitlines():
            click.echo(f"  | {escape(line, backslash=False)}", err=True)
        click.echo(f"  (the full {refusal.log_name}: --verbose)", err=True)


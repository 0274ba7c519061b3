"""The ``rawbpf load`` options that configure the Claude monitor, and the dispatch to it.

They apply when the object is claude_monitor (the object's name, not its path); for any other object giving
one is a usage error.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import click

from rawbpf.errors import ConfigError
from rawbpf.monitor import OBJECT_NAME

__tier__ = "kernel"

F = Callable[..., Any]

_OPTIONS = [
    click.option("--match-comm", "match_comm", multiple=True, metavar="NAME",
                 help="[claude_monitor] Also track processes with this task name (repeatable)."),
    click.option("--match-path", "match_path", multiple=True, metavar="TEXT",
                 help="[claude_monitor] Also track execs whose filename contains TEXT (repeatable)."),
    click.option("--match-name", "match_name", multiple=True, metavar="NAME",
                 help="[claude_monitor] Also track execs whose filename's last component is NAME."),
    click.option("--no-default-rules", is_flag=True,
                 help="[claude_monitor] Drop the built-in claude identification rules."),
    click.option("--endpoint", "endpoints", multiple=True, metavar="CIDR[:PORT]=NAME|HOST[:PORT]=NAME",
                 help="[claude_monitor] Name connections to CIDR (on PORT only, if given) or to a host name "
                      "learnt from DNS or TLS (*.example.com for subdomains) as NAME (repeatable; adds to "
                      "160.79.104.0/23 and 2607:6bc0::/48 = anthropic-api)."),
    click.option("--no-default-endpoints", is_flag=True,
                 help="[claude_monitor] Drop the built-in anthropic-api endpoints."),
    click.option("--only-endpoints", is_flag=True,
                 help="[claude_monitor] Record only connections to named endpoints (kernel-side filter)."),
    click.option("--ring-bytes", type=int, default=None, metavar="N",
                 help="[claude_monitor] Size of the kernel ring buffer (power of two; default 4 MiB)."),
    click.option("--priority-boost", type=int, default=None, metavar="N",
                 help="[claude_monitor] Lower the consuming thread's nice value by N so a busy host does not "
                      "starve it (default 4, as auditd; 0 = off)."),
    click.option("--watch-read", "watch_read", multiple=True, metavar="GLOB",
                 help="[claude_monitor] Also record reads of paths matching GLOB (~ = the process owner's "
                      "home, ** = any directories, trailing / = everything below; repeatable)."),
    click.option("--no-default-watch", is_flag=True,
                 help="[claude_monitor] Drop the built-in sensitive-read globs (~/.ssh/, **/.env, ...)."),
    click.option("--no-seed", is_flag=True,
                 help="[claude_monitor] Do not look for Claude processes already running (/proc)."),
    click.option("--argv-max-args", type=int, default=None, metavar="N",
                 help="[claude_monitor] Arguments recorded per exec (default 32, at most 64)."),
    click.option("--argv-max-bytes", type=int, default=None, metavar="N",
                 help="[claude_monitor] Bytes of argv recorded per exec (default 2048, at most 4096)."),
]

OPTION_NAMES = ("match_comm", "match_path", "match_name", "no_default_rules", "endpoints",
                "no_default_endpoints", "only_endpoints", "ring_bytes", "priority_boost", "no_seed",
                "argv_max_args", "argv_max_bytes", "watch_read", "no_default_watch")


def monitor_options(f: F) -> F:
    """Decorate a click command with the monitor's options (they arrive as keyword arguments)."""
    for opt in reversed(_OPTIONS):
        f = opt(f)
    return f


def _given(values: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, False, ())}


def object_is_monitor(obj: str) -> bool:
    """Whether ``obj`` is the Claude monitor by its content (False if it cannot be parsed: the loader
    reports that)."""
    return parsed_monitor(obj) is not None


def parse_quietly(obj: str) -> Optional[Any]:
    """``obj`` parsed (a :class:`rawbpf.spec.CollectionSpec`), or None when it cannot be: the loader parses
    it again and reports why."""
    from rawbpf.elf import load_spec

    try:
        return load_spec(obj)
    except Exception:
        return None


def parsed_monitor(obj: str, spec: Optional[Any] = None) -> Optional[Any]:
    """``obj`` parsed under the monitor's name if it is the Claude monitor by its content, else None (also
    when it cannot be parsed: the loader reports that). Parsed once, the spec is handed on to the load;
    ``spec``: ``obj`` already parsed by :func:`parse_quietly`."""
    from rawbpf.elf import load_spec
    from rawbpf.monitor import OBJECT_NAME, is_monitor

    if spec is None:
        spec = parse_quietly(obj)
    try:
        if spec is None or not is_monitor(spec):
            return None
        # a renamed copy: parsed again under the monitor's name (its internal maps are named after it)
        return spec if spec.name == OBJECT_NAME else load_spec(obj, OBJECT_NAME)
    except Exception:
        return None


def maybe_run_monitor(obj: str, values: Dict[str, Any], *, parsed: Optional[Any] = None,
                      **load_kwargs: Any) -> bool:
    """Run the monitor if ``obj`` is claude_monitor by its content, whatever the file is called (returns
    True when it ran); otherwise reject monitor options given for another object and return False so the
    generic loader runs. ``parsed``: ``obj`` already parsed by :func:`parse_quietly`, looked at and not
    changed (the generic loader can take it on)."""
    given = _given({k: values.get(k) for k in OPTION_NAMES})
    spec = parsed_monitor(obj, parsed)
    if spec is None:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ConfigError(f"load {obj}: {flags} only apply to the {OBJECT_NAME} object")
        return False
    from rawbpf.monitor.config import build_config
    from rawbpf.monitor.run import run_monitor

    cfg = build_config(
        match_comm=values.get("match_comm") or (), match_path=values.get("match_path") or (),
        match_name=values.get("match_name") or (), endpoints=values.get("endpoints") or (),
        no_default_rules=bool(values.get("no_default_rules")),
        no_default_endpoints=bool(values.get("no_default_endpoints")),
        only_endpoints=bool(values.get("only_endpoints")),
        argv_max_args=values.get("argv_max_args"), argv_max_bytes=values.get("argv_max_bytes"),
        ring_bytes=values.get("ring_bytes"), priority_boost=values.get("priority_boost"),
        watch_read=values.get("watch_read") or (), no_default_watch=bool(values.get("no_default_watch")),
    )
    run_monitor(obj, cfg, seed_from_proc=not values.get("no_seed"), spec=spec, **load_kwargs)
    return True

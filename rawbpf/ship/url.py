"""Destination URLs for ``rawbpf ship --to URL``; pure.

``SCHEME://HOST:PORT[?option=value&…]`` with scheme ``forward``, ``forward+tls``, ``syslog+tcp``,
``syslog+tls`` or ``relp``. HOST is a name, an IPv4 address or a bracketed IPv6 address. Secrets never sit
in a URL (it shows up in ``ps`` and in status output): the Fluent shared key and password are read from
files named by ``shared_key_file`` / ``password_file``.

Options (all optional):

=================  ==========================================================================================
``ca``             CA bundle (PEM) that signs the server certificate (TLS); default: the system's
``cert``, ``key``  client certificate and key (PEM) for servers that require one (TLS)
``verify``         ``0`` skips certificate and host-name checks (TLS; not for production)
``server_name``    the name the certificate must carry (TLS; default HOST)
``gzip``           ``1``: compress each Forward chunk (``compressed: "gzip"``)
``ack``            ``0``: the Forward server sends no acks; a chunk counts as delivered once the peer's TCP
                   stack has acknowledged every byte of it (the rule syslog uses)
``shared_key_file`` Forward shared-key handshake (``HELO``/``PING``/``PONG``) with the key in this file
``username``, ``password_file``  Forward user authentication inside the handshake
``hostname``       this host's name in Forward ``PING``, in records (``host``) and in syslog HOSTNAME
``facility``       syslog facility, a name (``local0``…``local7``, ``user``, ``daemon``, ``auth``,
                   ``authpriv``) or 0-23; default ``local0``
``app_name``       syslog APP-NAME (default ``rawbpf``)
``batch``          records per chunk / write (default 2000)
``window``         most records sent and not yet acknowledged (default 20000): bounds memory
``ack_timeout``    seconds to wait for an acknowledgement before reconnecting and resending (default 30)
``connect_timeout`` seconds for connect and handshake (default 10)
=================  ==========================================================================================
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Dict, Optional
from urllib.parse import parse_qsl, urlsplit

from rawbpf.errors import ConfigError

__tier__ = "pure"

SCHEMES = ("forward", "forward+tls", "syslog+tcp", "syslog+tls", "relp")

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

_OPTIONS = {
    "ca", "cert", "key", "verify", "server_name", "gzip", "ack", "shared_key_file", "username",
    "password_file", "hostname", "facility", "app_name", "batch", "window", "ack_timeout", "connect_timeout",
}
_TLS_ONLY = {"ca", "cert", "key", "verify", "server_name"}
_FORWARD_ONLY = {"gzip", "ack", "shared_key_file", "username", "password_file"}
_SYSLOG_ONLY = {"facility", "app_name"}
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,48}$")


@dataclass
class Destination:
    """One parsed ``--to`` URL. ``url`` is the text as given (it holds no secrets)."""

    url: str
    scheme: str
    host: str
    port: int
    options: Dict[str, str] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        """``forward``, ``syslog`` or ``relp``."""
        return self.scheme.split("+")[0]

    @property
    def tls(self) -> bool:
        return self.scheme.endswith("+tls")

    @property
    def key(self) -> str:
        """A file-name-safe id: the cursor and lock files of this destination are named after it."""
        host = re.sub(r"[^A-Za-z0-9.-]", "_", self.host)
        return f"{self.scheme.replace('+', '_')}-{host}-{self.port}"

    def flag(self, name: str, default: bool) -> bool:
        value = self.options.get(name)
        return default if value is None else value not in ("0", "false", "no", "off")

    def number(self, name: str, default: float) -> float:
        value = self.options.get(name)
        return default if value is None else float(value)

    def text(self, name: str, default: str = "") -> str:
        return self.options.get(name, default)

    @property
    def batch(self) -> int:
        return int(self.number("batch", 2000))

    @property
    def window(self) -> int:
        return int(self.number("window", max(20000, self.batch)))

    @property
    def ack_timeout(self) -> float:
        return self.number("ack_timeout", 30.0)

    @property
    def connect_timeout(self) -> float:
        return self.number("connect_timeout", 10.0)

    @property
    def facility(self) -> int:
        return facility_code(self.options.get("facility", "local0"))


def facility_code(text: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 23:
        return int(text)
    if text in FACILITIES:
        return FACILITIES[text]
    raise ConfigError(f"facility '{text}': expected 0-23 or one of {', '.join(FACILITIES)}")


def _check_number(url: str, name: str, value: str, minimum: float, integer: bool) -> None:
    try:
        n = int(value) if integer else float(value)
    except ValueError:
        raise ConfigError(f"--to {url}: option {name}={value} is not a number") from None
    if n < minimum:
        raise ConfigError(f"--to {url}: option {name}={value} must be at least {minimum:g}")


def parse_destination(url: str) -> Destination:
    """Parse and check one destination URL; ConfigError (one line, naming the URL) when it is bad."""
    text = url.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise ConfigError(f"--to {url}: expected SCHEME://HOST:PORT with scheme {', '.join(SCHEMES)}")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"--to {url}: unknown scheme '{scheme}' (known: {', '.join(SCHEMES)})")
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"--to {url}: credentials do not belong in the URL (use password_file=PATH)")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"--to {url}: expected no path after HOST:PORT")
    host = parts.hostname or ""
    if not host:
        raise ConfigError(f"--to {url}: missing host")
    try:
        port: Optional[int] = parts.port
    except ValueError:
        raise ConfigError(f"--to {url}: port must be a number 1-65535") from None
    if not port:
        raise ConfigError(f"--to {url}: missing port (e.g. {scheme}://{host}:24224)")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"--to {url}: bad IPv6 address '{host}'") from None
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ConfigError(f"--to {url}: bad host name '{host}'")
    options: Dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in _OPTIONS:
            raise ConfigError(f"--to {url}: unknown option '{name}' (known: {', '.join(sorted(_OPTIONS))})")
        options[name] = value
    dest = Destination(url=text, scheme=scheme, host=host, port=port, options=options)
    for name in options:
        if name in _TLS_ONLY and not dest.tls:
            raise ConfigError(f"--to {url}: option {name} needs a +tls scheme")
        if name in _FORWARD_ONLY and dest.protocol != "forward":
            raise ConfigError(f"--to {url}: option {name} applies to forward:// only")
        if name in _SYSLOG_ONLY and dest.protocol == "forward":
            raise ConfigError(f"--to {url}: option {name} applies to syslog and relp only")
    for name, minimum, integer in (("batch", 1, True), ("window", 1, True), ("ack_timeout", 0.1, False),
                                   ("connect_timeout", 0.1, False)):
        if name in options:
            _check_number(url, name, options[name], minimum, integer)
    if "facility" in options:
        facility_code(options["facility"])
    if "hostname" in options and not _PRINTABLE.match(options["hostname"]):
        raise ConfigError(f"--to {url}: hostname must be 1-48 printable characters without spaces")
    if "app_name" in options and not _PRINTABLE.match(options["app_name"]):
        raise ConfigError(f"--to {url}: app_name must be 1-48 printable characters without spaces")
    if ("username" in options) != ("password_file" in options):
        raise ConfigError(f"--to {url}: username and password_file go together")
    if "username" in options and "shared_key_file" not in options:
        raise ConfigError(f"--to {url}: user authentication needs the shared-key handshake (shared_key_file)")
    if "cert" in options and "key" not in options:
        raise ConfigError(f"--to {url}: cert needs key")
    if dest.batch > dest.window:
        raise ConfigError(f"--to {url}: batch ({dest.batch}) must not exceed window ({dest.window})")
    return dest


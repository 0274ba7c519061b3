"""Monitor configuration: validation, encodings for the program's maps and rodata, C defaults."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from rawbpf.errors import ConfigError
from rawbpf.monitor import config as mc

OBJ = Path(__file__).resolve().parents[2] / "programs" / "claude_monitor.o"


def test_defaults_validate_and_encode() -> None:
    cfg = mc.MonitorConfig().validate()
    consts = cfg.constants()
    assert consts["argv_max_args"] == 32 and consts["argv_max_bytes"] == 2048
    assert len(consts["path_rules"]) == mc.MAX_PATH_RULES * (8 + mc.RULE_LEN)
    assert mc.decode_path_rules(consts["path_rules"]) == list(cfg.path_rules)
    comms = dict(cfg.comm_rule_entries())
    assert comms[b"claude".ljust(16, b"\0")] == struct.pack("<I", mc.COMM_TRACK)
    assert comms[b"node".ljust(16, b"\0")] == struct.pack("<I", mc.COMM_INTERPRETER)


def test_endpoint_keys_map_ipv4_into_ipv6() -> None:
    key = mc.endpoint_key(ipaddress.ip_network("160.79.104.0/23"))
    assert struct.unpack_from("<I", key)[0] == 23 + 96
    assert key[4:] == bytes(10) + b"\xff\xff" + bytes([160, 79, 104, 0])
    key6 = mc.endpoint_key(ipaddress.ip_network("2607:6bc0::/48"))
    assert struct.unpack_from("<I", key6)[0] == 48
    assert key6[4:] == ipaddress.IPv6Address("2607:6bc0::").packed


def test_rodata_defaults_match_the_compiled_program() -> None:
    """The C file and config.py must agree on defaults: the object behaves the same without overrides."""
    from rawbpf.elf import load_spec

    spec = load_spec(str(OBJ))
    consts = mc.MonitorConfig().constants()
    for name in ("argv_max_args", "argv_max_bytes", "only_endpoints", "wakeup_bytes", "path_rules"):
        var = spec.variables[name]
        data = bytes(spec.maps[var.map].data)[var.offset : var.offset + var.size]
        want = consts[name]
        if isinstance(want, int):
            want = want.to_bytes(var.size, "little")
        assert data == want, name


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"match_comm": ["x" * 16]}, "comm 'xxxxxxxxxxxxxxxx'"),
        ({"match_comm": [""]}, "comm ''"),
        ({"match_path": ["p" * 65]}, "path rule"),
        ({"match_name": ["a/b"]}, "basename rule 'a/b'"),
        ({"endpoints": ["10.0.0.0/8"]}, "expected CIDR[:PORT]=NAME or HOST[:PORT]=NAME"),
        ({"endpoints": ["10.0.0.0/8:0=x"]}, "port '0' is not in 1..65535"),
        ({"endpoints": ["10.0.0.0/8:http=x"]}, "port 'http'"),
        ({"endpoints": ["[::1=x"]}, "expected [IPV6]:PORT"),
        ({"endpoints": ["bad host!=x"]}, "endpoint 'bad host!=x'"),
        ({"endpoints": ["api.example.com=x"], "only_endpoints": True}, "cannot be used with --only"),
        ({"watch_read": ["relative/x"]}, "watch glob 'relative/x': must start with"),
        ({"watch_read": [" "]}, "watch glob: empty"),
        ({"endpoints": ["10.0.0.300/8=x"]}, "endpoint '10.0.0.300/8=x'"),
        ({"endpoints": ["10.0.0.0/8=" + "n" * 32]}, "endpoint 10.0.0.0/8: name"),
        ({"argv_max_args": 0}, "argv max args: 0"),
        ({"argv_max_args": 65}, "argv max args: 65"),
        ({"argv_max_bytes": 5000}, "argv max bytes: 5000"),
        ({"match_path": [f"/p{i}/" for i in range(13)]}, "path rules: at most 16"),
        ({"ring_bytes": 3000}, "ring bytes: 3000"),
        ({"ring_bytes": 12288}, "ring bytes: 12288"),
        ({"ring_bytes": 1 << 31}, "ring bytes: 2147483648"),
        ({"priority_boost": -1}, "priority boost: -1"),
        ({"priority_boost": 40}, "priority boost: 40"),
    ],
)
def test_bad_values_are_one_line_config_errors(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        mc.build_config(**kwargs)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg and msg[0].islower()


def test_build_config_adds_to_or_replaces_defaults() -> None:
    cfg = mc.build_config(match_comm=["my-claude"], match_path=["/opt/ai/"], match_name=["cc"],
                          endpoints=["10.1.0.0/16=corp-proxy"], only_endpoints=True)
    assert "claude" in cfg.comms and "my-claude" in cfg.comms
    assert mc.PathRule("/opt/ai/") in cfg.path_rules and mc.PathRule("cc", True) in cfg.path_rules
    assert cfg.endpoint_names()["10.1.0.0/16"] == "corp-proxy"
    assert cfg.endpoint_names()["160.79.104.0/23"] == "anthropic-api"
    assert cfg.constants()["only_endpoints"] == 1
    bare = mc.build_config(no_default_rules=True, no_default_endpoints=True, match_comm=["x"])
    assert bare.comms == ("x",) and bare.path_rules == () and bare.endpoints == ()


def test_match_endpoint_longest_prefix_and_mapped() -> None:
    eps = {ipaddress.ip_network("160.79.104.0/23"): "anthropic-api",
           ipaddress.ip_network("160.79.104.0/24"): "narrow"}
    assert mc.match_endpoint(eps, "160.79.104.7") == "narrow"
    assert mc.match_endpoint(eps, "160.79.105.7") == "anthropic-api"
    assert mc.match_endpoint(eps, "::ffff:160.79.105.7") == "anthropic-api"
    assert mc.match_endpoint(eps, "1.2.3.4") is None
    assert mc.match_endpoint(eps, "not an ip") is None

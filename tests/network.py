"""Hosts for the tests: Linux network namespaces on a bridge of their own.

Each host has its own network stack and address, so its processes reach the others
only through the bridge, as separate machines on one LAN would; files are shared
(each host works in a clone of its own). Nothing routes beyond the bridge. Needs
root and iproute2 (`ip`), as the test machines have.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str

    def command(self, argv: list[str]) -> list[str]:
        """argv, run on this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass(frozen=True)
class Network:
    bridge_address: str  # this machine's own address on the bridge: where servers listen
    hosts: list[Host]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def network(count: int) -> Iterator[Network]:
    tag = os.getpid() % 100_000
    subnet = f"10.231.{tag % 250}"
    bridge = f"cbr{tag}"
    with ExitStack() as cleanup:
        _ip("link", "add", bridge, "type", "bridge")
        cleanup.callback(_ip, "link", "del", bridge)
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        hosts = []
        for number in range(1, count + 1):
            namespace, outside, inside = f"cns{tag}-{number}", f"cv{tag}-{number}", "eth0"
            _ip("netns", "add", namespace)
            cleanup.callback(_ip, "netns", "del", namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
            _ip("link", "set", outside, "master", bridge, "up")
            address = f"{subnet}.{number + 1}"
            for args in (
                ("addr", "add", f"{address}/24", "dev", inside),
                ("link", "set", inside, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("-n", namespace, *args)
            hosts.append(Host(namespace, address))
        yield Network(f"{subnet}.1", hosts)

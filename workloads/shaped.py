"""Shaped links on one machine: each rank in its own network namespace, links rate-limited with `tc tbf`.

    with ShapedNet(ranks=2, rate_mbit=100) as net:
        procs = [net.popen(r, ["thinwire", "run", ...]) for r in range(2)]

Topology: a switch namespace holding a Linux bridge, and one namespace per rank joined to it by a veth
pair. Both ends of every veth get a token-bucket filter at the same rate, so each rank has a full-duplex
link of that rate to the switch, like a host on a switched Ethernet. This kernel has no netem, so links
add no latency beyond the kernel's own; ../shared/notes/cpu-stack.md measured tbf at 94-96% of nominal.

Addresses are 10.231.0.<rank + 1>/24 and exist only inside the namespaces created here; nothing
touches the host's interfaces. Namespaces are always deleted: on exit of the `with` block, on
SIGTERM/SIGINT, and at interpreter exit. Needs root (CAP_NET_ADMIN); `unavailable()` says why not.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from thinwire.algorithms.comm import ThinwireError

SUBNET = "10.231.0"
PORT = 29631


def unavailable() -> str | None:
    """Why shaped links cannot be built here, or None when they can."""
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian package iproute2)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"twprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise ThinwireError(f"shaped network: `{' '.join(cmd)}` failed: {done.stderr.strip()}")


class ShapedNet:
    """`ranks` namespaces behind one switch; rate_mbit None leaves the links unshaped (veth speed)."""

    def __init__(self, ranks: int, rate_mbit: float | None, prefix: str | None = None) -> None:
        if ranks < 2:
            raise ThinwireError(f"a shaped network needs at least 2 ranks, got {ranks}")
        if rate_mbit is not None and rate_mbit <= 0:
            raise ThinwireError(f"link rate must be positive, got {rate_mbit} Mbit/s")
        self.ranks, self.rate_mbit = ranks, rate_mbit
        self.prefix = prefix or f"tw{os.getpid()}"
        self.switch = f"{self.prefix}-sw"
        self.namespaces: list[str] = []
        self._old_handlers: dict[int, Any] = {}

    def ns(self, rank: int) -> str:
        return f"{self.prefix}-r{rank}"

    def address(self, rank: int) -> str:
        return f"{SUBNET}.{rank + 1}"

    def __enter__(self) -> ShapedNet:  # noqa: PYI034
        reason = unavailable()
        if reason:
            raise ThinwireError(f"shaped links unavailable: {reason}")
        atexit.register(self.close)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.close()
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    def _add_ns(self, name: str) -> None:
        _ip("ip", "netns", "add", name)
        self.namespaces.append(name)
        _ip("ip", "link", "set", "lo", "up", ns=name)

    def _shape(self, dev: str, ns: str) -> None:
        if self.rate_mbit is not None:
            # A bucket of 1 ms at the link rate (at least 16 KB, for the kernel's timer granularity):
            # a bigger one lets whole small messages through at veth speed, unlike a real link.
            burst = max(16 * 1024, int(self.rate_mbit * 1e6 / 8 * 1e-3))
            _ip("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{self.rate_mbit}mbit",
                "burst", str(burst), "latency", "50ms", ns=ns)

    def _build(self) -> None:
        self._add_ns(self.switch)
        _ip("ip", "link", "add", "br0", "type", "bridge", ns=self.switch)
        _ip("ip", "link", "set", "br0", "up", ns=self.switch)
        for r in range(self.ranks):
            ns, host_end, switch_end = self.ns(r), f"v{r}", f"s{r}"
            self._add_ns(ns)
            _ip("ip", "link", "add", host_end, "netns", ns, "type", "veth", "peer", "name", switch_end,
                "netns", self.switch)
            _ip("ip", "addr", "add", f"{self.address(r)}/24", "dev", host_end, ns=ns)
            _ip("ip", "link", "set", host_end, "up", ns=ns)
            _ip("ip", "link", "set", switch_end, "master", "br0", ns=self.switch)
            _ip("ip", "link", "set", switch_end, "up", ns=self.switch)
            self._shape(host_end, ns)
            self._shape(switch_end, self.switch)

    def close(self) -> None:
        while self.namespaces:
            subprocess.run(["ip", "netns", "del", self.namespaces.pop()], check=False, capture_output=True)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        atexit.unregister(self.close)

    def env(self, rank: int, port: int = PORT) -> dict[str, str]:
        """What a torch.distributed rank needs inside its namespace (env:// rendezvous on rank 0)."""
        return {"RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": str(self.ranks),
                "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": self.address(0), "MASTER_PORT": str(port),
                "GLOO_SOCKET_IFNAME": f"v{rank}"}

    def popen(self, rank: int, argv: Sequence[str], env: dict[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen:
        full_env = {**os.environ, **(env or {}), **self.env(rank)}
        return subprocess.Popen(["ip", "netns", "exec", self.ns(rank), *argv], env=full_env, **kwargs)

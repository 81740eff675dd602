"""Hostile suite, "the command agent can reach host loopback services and abstract unix sockets"
(issue 18, item 7): with its own network (the default) it cannot; it has a tap0 with user-mode
networking instead. The servers are the test's own, on 127.0.0.1 and an abstract socket; nothing is
aimed at another address of this machine. ``network = "host"`` (the opt-in) is the control.
As root and as nobody (the agent is run by a stand-in daemon of that user)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from autoresearch.agents.usernet import SLIRP_DNS
from tests.runners.hostile import ROOT, as_user, give_to_nobody, workdir
from tests.runners.process_helpers import token

PROBE = """
import json, socket, sys, urllib.request
port, name = int(sys.argv[1]), sys.argv[2]
seen = {}
for host in ("127.0.0.1", "10.0.2.2"):
    try:
        seen[host] = urllib.request.urlopen(f"http://{host}:{port}/", timeout=3).read().decode()
    except OSError as exc:
        seen[host] = f"refused {exc}"
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\\0" + name)
    seen["abstract"] = s.recv(100).decode()
except OSError as exc:
    seen["abstract"] = f"refused {exc}"
seen["ifaces"] = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
seen["resolv"] = open("/etc/resolv.conf").read()
seen["uid"] = __import__("os").getuid()
seen["capeff"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
print(json.dumps(seen))
"""
HARNESS = """
import json, sys
from pathlib import Path
from autoresearch.agents.sandbox import AgentJail
from autoresearch.ops.config import CommandAgentSettings
base, network, port, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jail = AgentJail.from_config(CommandAgentSettings(command="x", writable=[], network=network, timeout_s=60))
with (base / "agent.log").open("wb") as out:
    code = jail.run(f"{sys.executable} probe.py {port} {name}", base / "tree", base / "work" / "context.md", {}, out)
print(json.dumps({"code": code}))
"""


@contextmanager
def loopback_services(secret: str) -> Iterator[tuple[int, str]]:
    """An HTTP server on 127.0.0.1 and an abstract unix socket server, both answering ``secret``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(secret.encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    name = f"autoresearch-test-{secret}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + name)
    abstract.listen(4)
    abstract.settimeout(0.2)
    stop = threading.Event()

    def serve_abstract() -> None:
        while not stop.is_set():
            try:
                conn, _ = abstract.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(secret.encode())

    threads = [threading.Thread(target=httpd.serve_forever, daemon=True),
               threading.Thread(target=serve_abstract, daemon=True)]
    for t in threads:
        t.start()
    try:
        yield httpd.server_address[1], name
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        abstract.close()
        for t in threads:
            t.join(5)


def _probe(user: str, network: str) -> tuple[dict[str, object], str]:
    secret = token()
    with workdir() as base, loopback_services(secret) as (port, name):
        (base / "tree").mkdir()
        (base / "work").mkdir()
        (base / "work" / "context.md").write_text("context\n")
        (base / "tree" / "probe.py").write_text(PROBE)
        give_to_nobody(base)
        env = {"PATH": os.environ["PATH"], "HOME": str(base), "PYTHONPATH": f"{ROOT / 'daemon'}:{ROOT}"}
        done = subprocess.run(as_user([sys.executable, "-c", HARNESS, str(base), network, str(port), name], user),
                              cwd=base, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        log = (base / "agent.log").read_text()
        assert json.loads(done.stdout.strip().splitlines()[-1])["code"] == 0, log
    seen = json.loads(log.strip().splitlines()[-1])
    return seen, secret


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_the_agent_reaches_no_host_loopback_service(user: str) -> None:
    seen, secret = _probe(user, "user")
    assert secret not in json.dumps(seen), seen
    assert str(seen["127.0.0.1"]).startswith("refused") and str(seen["10.0.2.2"]).startswith("refused"), seen
    assert str(seen["abstract"]).startswith("refused"), seen
    assert seen["ifaces"] == ["lo", "tap0"] and seen["resolv"] == f"nameserver {SLIRP_DNS}\n", seen
    assert seen["uid"] == (0 if user == "root" else 65534), seen  # the CLI keeps the daemon's uid
    assert seen["capeff"] == "0000000000000000", seen


def test_the_host_network_opt_in_is_the_control() -> None:
    """With ``network = "host"`` the same probe reaches both services: the test above can fail."""
    seen, secret = _probe("root", "host")
    assert seen["127.0.0.1"] == secret and seen["abstract"] == secret, seen

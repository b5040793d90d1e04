"""The shipped reverse proxies (infra/nginx/enexa.conf and amperio.conf), each run in a real
nginx: TLS 1.3 only, X-Forwarded-For overwritten. Only ports, certificate and log paths are
swapped for the test's own."""

import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from amperio.procs import REPO_DIR, Proc, free_port, wait_until

# Each shipped file with the gunicorn address it proxies to.
SHIPPED = {"enexa.conf": "127.0.0.1:8000", "amperio.conf": "127.0.0.1:8100"}


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        # Never skipped: this test is what proves the TLS promise (.ci/run installs nginx).
        pytest.fail("nginx is not installed (apt-get install -y nginx-light)")
    return found


def shipped(name: str) -> Path:
    return REPO_DIR / "infra" / "nginx" / name


def swap(text: str, pattern: str, replacement: str) -> str:
    """Replace what `pattern` matches exactly once: a shipped file that changed shape fails
    here instead of silently testing something else."""
    result, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count == 1, f"{pattern!r} matched {count} times"
    return result


def render(name: str, tmp: Path, https_port: int, http_port: int, upstream_port: int) -> Path:
    conf = shipped(name).read_text()
    conf = re.sub(r"^\s*listen \[::\].*\n", "", conf, flags=re.M)  # no IPv6 needed here
    conf = swap(conf, r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    conf = swap(conf, r"listen 80;", f"listen 127.0.0.1:{http_port};")
    conf = swap(conf, rf"server {re.escape(SHIPPED[name])} ", f"server 127.0.0.1:{upstream_port} ")
    conf = swap(conf, r"ssl_certificate\s+\S+;", f"ssl_certificate {tmp / 'cert.pem'};")
    conf = swap(conf, r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {tmp / 'key.pem'};")
    conf = swap(conf, r"access_log /var/log/nginx/", f"access_log {tmp}/")
    (tmp / name).write_text(conf)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp / "nginx.conf"
    main.write_text(
        f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} warn;\n"
        f"events {{}}\nhttp {{\n{temp_paths}\n    include {tmp / name};\n}}\n"
    )
    return main


class Upstream(BaseHTTPRequestHandler):
    """Stands in for gunicorn: answers with the headers nginx forwarded."""

    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def nginx(request, tmp_path_factory):
    binary = nginx_binary()
    tmp = tmp_path_factory.mktemp("nginx")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp / "key.pem"),
         "-out", str(tmp / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    https_port, http_port = free_port(), free_port()
    main = render(request.param, tmp, https_port, http_port, upstream.server_address[1])
    checked = subprocess.run([binary, "-t", "-p", str(tmp), "-c", str(main)], capture_output=True)
    assert checked.returncode == 0, checked.stderr.decode()
    proc = Proc("nginx", [binary, "-p", str(tmp), "-c", str(main), "-g", "daemon off;"], tmp)
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", https_port), 1).close() or 1,
                   20, what="nginx listening")  # fmt: skip
        yield {"https": https_port, "http": http_port, "ca": tmp / "cert.pem"}
    finally:
        proc.stop()
        upstream.shutdown()


def client_context(ca: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = version
    context.maximum_version = version
    return context


def get(nginx, version: ssl.TLSVersion, headers=None) -> http.client.HTTPResponse:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", nginx["https"], context=client_context(nginx["ca"], version), timeout=10
    )
    conn.request("GET", "/v1/health", headers=headers or {})
    return conn.getresponse()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_configuration_allows_tls_1_3_only(name):
    conf = shipped(name).read_text()
    assert re.findall(r"^\s*ssl_protocols\s+([^;]+);", conf, flags=re.M) == ["TLSv1.3"]


def test_a_tls_1_3_client_reaches_the_api_through_nginx(nginx):
    response = get(nginx, ssl.TLSVersion.TLSv1_3)
    assert response.status == 200
    assert response.getheader("Strict-Transport-Security").startswith("max-age=")


def test_a_tls_1_2_client_is_refused_at_the_handshake(nginx):
    with pytest.raises(ssl.SSLError):
        get(nginx, ssl.TLSVersion.TLSv1_2)


def test_a_client_sent_x_forwarded_for_is_overwritten_with_the_peer_address(nginx):
    response = get(nginx, ssl.TLSVersion.TLSv1_3, {"X-Forwarded-For": "203.0.113.9"})
    forwarded = json.loads(response.read())
    assert forwarded["x-forwarded-for"] == "127.0.0.1"
    assert forwarded["x-forwarded-proto"] == "https"


def test_plain_http_is_redirected_to_https(nginx):
    conn = http.client.HTTPConnection("127.0.0.1", nginx["http"], timeout=10)
    conn.request("GET", "/v1/health")
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location").startswith("https://")

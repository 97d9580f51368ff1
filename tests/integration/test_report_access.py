"""Who reaches the report page, through real servers and a real reverse proxy.

Integration tests: the app with ``report=True`` served by waitress and by
gunicorn (forked workers, with and without ``--preload``), behind Debian's
nginx on loopback with the proxy configurations people write (only
``X-Forwarded-For``; ``Host`` left as the upstream's address or set to the
client's; ``X-Real-IP``; an upstream block).  Without a token, no request
through any of them reaches the page, whatever it claims in its headers,
and neither does a direct request to the app's own port from loopback; the
page is on the loopback listener only.  With a token, it is reached through
every configuration, with the token only.

nginx runs from the test with its own configuration in a temporary
directory (not as a system service).  Needs ``nginx`` (apt) and
``waitress`` and ``gunicorn`` (pip); each test that needs one says so when
it skips.  Last, the page as the listener serves it, in Debian's headless
Chromium (apt ``chromium chromium-driver``, pip ``selenium``): it draws
under its own HTTP Content-Security-Policy, and a hostile endpoint name is
text.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from helpers import browser_env, free_port, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "access-test-token-0123456789abcdef"
LISTENING = re.compile(
    r"the report page of process (\d+) is at (http://127\.0\.0\.1:\d+/_leakhunt/)"
)
#: What only the report page says (HTML, JSON, snapshot file).
REPORT_MARKS = (
    b"which endpoint leaks?",
    b'id="plh-data"',
    b'"endpoints"',
    b"\x89PLHUNT",
)

APP = """
import os

from pyleakhunt.wsgi import LeakHuntMiddleware

KEPT = []


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/leak"):
        KEPT.append(bytearray(1000))
    if path in ("/", "/hello") or path.startswith("/leak"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the app says hello\\n"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"the app has no such page\\n"]


port = os.environ.get("REPORT_PORT")
app = LeakHuntMiddleware(
    application,
    report=True,
    report_port=None if port is None else int(port),
    interval=3600,
)
"""

WAITRESS = """
import json, sys
import waitress
from reportapp import app
waitress.serve(app, **json.loads(sys.argv[1]))
"""

#: nginx proxy configurations: the directives inside ``location /``.
PROXY_CONFIGS = {
    # Nothing set: Host is the upstream's address, no forwarding header
    # (the client's own X-Forwarded-For passes through unchanged).
    "bare": "proxy_pass http://127.0.0.1:{app};",
    "xff only": """
        proxy_pass http://127.0.0.1:{app};
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    """,
    "host and xff": """
        proxy_pass http://127.0.0.1:{app};
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    """,
    "the usual four": """
        proxy_pass http://127.0.0.1:{app};
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    """,
    "headers cleared": """
        proxy_pass http://127.0.0.1:{app};
        proxy_set_header X-Forwarded-For "";
        proxy_set_header Forwarded "";
        proxy_set_header X-Real-IP "";
    """,
    "upstream named localhost": """
        proxy_pass http://leakhunt_app;
        proxy_set_header Host localhost;
    """,
}

#: What a client may claim.
SPOOFS = [
    {},
    {"X-Forwarded-For": "127.0.0.1"},
    {"X-Real-IP": "127.0.0.1"},
    {"Forwarded": "for=127.0.0.1"},
    {"Host": "localhost"},
    {"Host": "127.0.0.1"},
    {"Host": "localhost", "X-Forwarded-For": "127.0.0.1"},
]
PATHS = [
    "/_leakhunt/",
    "/_leakhunt",
    "/_leakhunt/api",
    "/_leakhunt/snapshot",
    "//_leakhunt/api",
    "/_leakhunt/./api",
    "/x/../_leakhunt/api",
    "/%5Fleakhunt/api",
]


# --------------------------------------------------------------------------
# Tools


def nginx_binary():
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )


def need(module):
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"{module} is not installed (pip install {module})")


def need_nginx():
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")


def request(port, path, headers=None):
    """(status, body) of GET *path* on 127.0.0.1:*port*; a ``Host`` in
    *headers* replaces the client's."""
    headers = dict(headers or {})
    host = headers.pop("Host", None)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def listener_port(url):
    return int(url.split(":")[2].split("/")[0])


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Server:
    """A process whose stderr goes to a file, stopped at the end."""

    def __init__(self, argv, cwd, env, log):
        self.log = log
        with open(log, "wb") as err:
            self.process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=err, stderr=subprocess.STDOUT
            )

    def output(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Stack:
    """The app under one server, with nginx in front of it."""

    def __init__(self, tmp_path, server, token=None, report_port=None):
        self.tmp = tmp_path
        tmp_path.mkdir()
        (tmp_path / "reportapp.py").write_text(APP)
        (tmp_path / "serve_waitress.py").write_text(WAITRESS)
        self.app_port = free_port()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
        env.pop("PYLEAKHUNT_REPORT_TOKEN", None)
        if token is not None:
            env["PYLEAKHUNT_REPORT_TOKEN"] = token
        if report_port is not None:
            env["REPORT_PORT"] = str(report_port)
        self.servers = []
        self.app = Server(
            self._server_argv(server),
            str(tmp_path),
            env,
            str(tmp_path / "app.log"),
        )
        self.servers.append(self.app)
        wait_for(
            lambda: accepts(self.app_port) or not self.app.alive(),
            "the app server to listen",
        )
        assert self.app.alive(), self.app.output()
        self.proxy_ports = {}
        if nginx_binary() is not None:
            self._start_nginx()

    def _server_argv(self, server):
        bind = "127.0.0.1:%d" % self.app_port
        if server == "waitress":
            options = {"listen": bind, "threads": 4}
            return [sys.executable, "serve_waitress.py", json.dumps(options)]
        if server == "waitress trusting nginx":
            # waitress then takes the client's address from X-Forwarded-For,
            # which a client behind the "bare" proxy writes itself.
            options = {
                "listen": bind,
                "threads": 4,
                "trusted_proxy": "127.0.0.1",
                "trusted_proxy_headers": "x-forwarded-for",
                "trusted_proxy_count": 1,
            }
            return [sys.executable, "serve_waitress.py", json.dumps(options)]
        gunicorn = [sys.executable, "-m", "gunicorn", "-b", bind, "-w", "2"]
        if server == "gunicorn":
            return gunicorn + ["reportapp:app"]
        if server == "gunicorn --preload":
            return gunicorn + ["--preload", "reportapp:app"]
        raise ValueError(server)

    def _start_nginx(self):
        root = self.tmp / "nginx"
        root.mkdir()
        servers = []
        for name, directives in PROXY_CONFIGS.items():
            port = self.proxy_ports[name] = free_port()
            body = textwrap.indent(
                textwrap.dedent(directives.format(app=self.app_port)).strip(),
                " " * 12,
            )
            servers.append(
                f"    server {{  # {name}\n"
                f"        listen 127.0.0.1:{port};\n"
                f"        server_name _;\n"
                f"        location / {{\n{body}\n        }}\n"
                f"    }}\n"
            )
        config = (
            "daemon off;\n"
            "master_process off;\n"
            f"pid {root}/nginx.pid;\n"
            f"error_log {root}/error.log warn;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "    access_log off;\n"
            f"    client_body_temp_path {root}/body;\n"
            f"    proxy_temp_path {root}/proxy;\n"
            f"    fastcgi_temp_path {root}/fastcgi;\n"
            f"    uwsgi_temp_path {root}/uwsgi;\n"
            f"    scgi_temp_path {root}/scgi;\n"
            f"    upstream leakhunt_app {{ server 127.0.0.1:{self.app_port}; }}\n"
            + "".join(servers)
            + "}\n"
        )
        (root / "nginx.conf").write_text(config)
        nginx = Server(
            [
                nginx_binary(),
                "-p",
                str(root),
                "-e",
                str(root / "error.log"),
                "-c",
                str(root / "nginx.conf"),
            ],
            str(root),
            dict(os.environ),
            str(root / "nginx.out"),
        )
        self.servers.append(nginx)
        wait_for(
            lambda: all(map(accepts, self.proxy_ports.values())) or not nginx.alive(),
            "nginx to listen",
        )
        assert nginx.alive(), nginx.output()

    def listeners(self):
        """{pid: report URL} from the app server's log."""
        return {int(pid): url for pid, url in LISTENING.findall(self.app.output())}

    def stop(self):
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture
def stack(tmp_path):
    stacks = []

    def make(server, **kwargs):
        need_nginx()
        need("waitress" if server.startswith("waitress") else "gunicorn")
        made = Stack(tmp_path / str(len(stacks)), server, **kwargs)
        stacks.append(made)
        return made

    yield make
    for made in stacks:
        made.stop()


def assert_not_the_report(status, body, where):
    assert status != 200, where
    for mark in REPORT_MARKS:
        assert mark not in body, where


SERVERS = ["waitress", "waitress trusting nginx", "gunicorn", "gunicorn --preload"]


# --------------------------------------------------------------------------
# Without a token


@pytest.mark.parametrize("server", SERVERS)
def test_no_proxy_config_reaches_the_page_without_a_token(stack, server):
    s = stack(server)
    for name, port in s.proxy_ports.items():
        # The proxy works: the app answers through it.
        status, body = request(port, "/hello")
        assert (status, body) == (200, b"the app says hello\n"), name
        for path in PATHS:
            for spoof in SPOOFS:
                status, body = request(port, path, spoof)
                assert_not_the_report(status, body, (name, path, spoof, status))
                if status == 404:
                    assert body == b"the app has no such page\n", (name, path)
    # The page exists, on the loopback listener of a process that serves.
    listeners = wait_for(s.listeners, "a report listener to be logged")
    served = 0
    for url in listeners.values():
        status, body = request(listener_port(url), "/_leakhunt/api")
        if status == 200:
            served += 1
            assert json.loads(body)["x_axis"] == "requests"
    assert served >= 1, s.app.output()


@pytest.mark.parametrize("server", ["waitress", "gunicorn"])
def test_the_apps_own_port_never_serves_the_page_without_a_token(stack, server):
    s = stack(server)
    request(s.app_port, "/leak/1")
    for path in PATHS[:4]:
        status, body = request(s.app_port, path)  # from loopback, no proxy header
        assert (status, body) == (404, b"the app has no such page\n"), path
    listeners = wait_for(s.listeners, "a report listener to be logged")
    assert s.app_port not in map(listener_port, listeners.values())


def test_each_gunicorn_worker_listens_on_a_port_of_its_own(stack):
    s = stack("gunicorn")
    listeners = wait_for(
        lambda: len(s.listeners()) >= 2 and s.listeners(), "both workers' listeners"
    )
    assert len(set(listeners.values())) == len(listeners) == 2
    for url in listeners.values():
        status, body = request(listener_port(url), "/_leakhunt/snapshot")
        assert status == 200 and body.startswith(b"\x89PLHUNT")


def test_with_preload_a_worker_listens_from_its_first_request(stack):
    s = stack("gunicorn --preload")
    master = s.app.process.pid
    # The master imported the app, so it listens too; its workers do not yet.
    assert list(wait_for(s.listeners, "the master's listener")) == [master]
    for _ in range(20):
        assert request(s.proxy_ports["bare"], "/leak/1")[0] == 200
    listeners = wait_for(
        lambda: len(s.listeners()) >= 2 and s.listeners(), "a worker's listener"
    )
    workers = {pid: url for pid, url in listeners.items() if pid != master}
    assert workers and listeners[master] not in workers.values()
    for url in workers.values():
        status, body = request(listener_port(url), "/_leakhunt/api")
        assert status == 200
        requests = sum(e["requests"] for e in json.loads(body)["endpoints"])
        assert requests >= 1  # this worker's own figures
    # The master's listener survived its workers' forks.
    assert request(listener_port(listeners[master]), "/_leakhunt/api")[0] == 200


def test_a_fixed_port_with_two_workers_is_taken_by_one_and_the_other_says_why(
    stack,
):
    port = free_port()
    s = stack("gunicorn", report_port=port)
    wait_for(
        lambda: s.listeners() and "cannot listen on 127.0.0.1" in s.app.output(),
        "one listener and one refusal",
    )
    assert list(s.listeners().values()) == ["http://127.0.0.1:%d/_leakhunt/" % port]
    assert "report_port=0" in s.app.output()
    assert request(port, "/_leakhunt/api")[0] == 200


# --------------------------------------------------------------------------
# With a token


@pytest.mark.parametrize("server", ["waitress", "gunicorn"])
def test_with_the_token_every_proxy_config_reaches_the_page(stack, server):
    s = stack(server, token=TOKEN)
    for name, port in s.proxy_ports.items():
        assert request(port, "/leak/1")[0] == 200
        for spoof in SPOOFS:
            status, body = request(port, "/_leakhunt/api", spoof)
            assert status == 401 and b"report token" in body, (name, spoof)
        for auth in (
            {"Authorization": "Bearer " + TOKEN},
            {"X-LeakHunt-Token": TOKEN},
        ):
            status, body = request(port, "/_leakhunt/api", auth)
            assert status == 200, (name, auth, body)
            assert json.loads(body)["x_axis"] == "requests"
        wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
        assert request(port, "/_leakhunt/api", wrong)[0] == 401
    # With a token and no report_port, nothing listens besides the app.
    assert s.listeners() == {}


# --------------------------------------------------------------------------
# The page in a real browser, as the listener serves it


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOSTILE = "<img src=x onerror=alert(1)>"


def test_the_page_draws_in_chromium_under_its_own_http_policy(tmp_path):
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
    from wsgiref.util import setup_testing_defaults

    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    from pyleakhunt import attribution
    from pyleakhunt.wsgi import LeakHuntMiddleware

    kept = []

    def application(environ, start_response):
        if environ["PATH_INFO"].startswith("/leak"):
            kept.append(bytearray(1000))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def name(environ):
        path = environ["PATH_INFO"]
        return "GET /leak" if path.startswith("/leak") else "GET " + HOSTILE

    attribution.reset()
    app = LeakHuntMiddleware(application, report=True, interval=3600, key=name)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        for _ in range(6):
            for path in ("/leak/1", "/other") * 20:
                environ = {}
                setup_testing_defaults(environ)
                environ["PATH_INFO"] = path
                b"".join(app(environ, lambda *args: None))
            attribution.current().sample()
        driver = webdriver.Chrome(
            service=Service(CHROMEDRIVER, env=browser_env()), options=options
        )
        driver.set_page_load_timeout(60)
        driver.get(app.report_url)
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "return document.documentElement.getAttribute('data-plh-drawn-ms')"
            )
        )
        console = driver.get_log("browser")
        assert not [e for e in console if e.get("level") == "SEVERE"], console
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
        text = driver.find_element("tag name", "body").text
        assert "Retained memory against requests served" in text
        assert "What GET /leak retains (LEAKING)" in text
        assert "GET " + HOSTILE in text  # as text, never as markup
        assert driver.find_elements("css selector", "svg")  # the chart
        assert not driver.find_elements("css selector", "main img")
    finally:
        if driver is not None:
            driver.quit()
        app.close()
        attribution.reset()

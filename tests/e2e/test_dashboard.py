"""The dashboard (dashboard/) end to end: the local host serves it, a workspace gets realistic
Usage and Perf data through the signed ingest route, and Debian's headless Chromium opens the page with
the workspace's reader key in the URL fragment, as an operator's automation would. The test waits
until the page says every chart is drawn, checks the marks against the data sent, and saves the
screenshot: in .local/dashboard.png, and with SLUICE_UPDATE_SCREENSHOT=1 also as the README's
docs/dashboard.png (so an ordinary test run leaves the tree clean).

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: it reads requests
on fd 3 and writes answers and events on fd 4, each a JSON message ended by NUL), so no driver or
websocket library is needed. It trusts exactly the local host's server key
(`--ignore-certificate-errors-spki-list`, which Chromium honours only with its own `--user-data-dir`),
and only after Python has checked that certificate against the host's CA. Certificate errors are not
ignored wholesale. Chromium runs in a time zone far from UTC to show that the page's days and hours are
UTC ones."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.client
import json
import os
import select
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devhost.azurite import REPO_ROOT
from devhost.certs import CA_FILE
from shared import sharedkey
from shared.workspaces import new_shared_key
from tests.e2e.conftest import HostSetup
from tests.e2e.support import REQUEST_TIMEOUT_SECONDS, SLUICE_COMMAND, LocalHost, eventually

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOT = REPO_ROOT / ".local" / "dashboard.png"
README_SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
UPDATE_SCREENSHOT_SETTING = "SLUICE_UPDATE_SCREENSHOT"
BROWSER_TIMEOUT_SECONDS = 20.0
PROCESSED_TIMEOUT_SECONDS = 20.0
BROWSER_TIME_ZONE = "Pacific/Kiritimati"  # UTC+14: a local day differs from the UTC day most hours
PERF_HOURS = 12  # hourly samples reaching back this far; well inside the page's last 24 hours
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


# --- Chromium over the DevTools protocol ---------------------------------------------------------


class DevTools:
    """One headless Chromium and its protocol pipe. `call` sends a command (to the browser, or to a
    page's session) and returns its result; events that arrive meanwhile are kept in `events`."""

    def __init__(self, process: subprocess.Popen[bytes], commands: int, answers: int) -> None:
        self.process = process
        self._commands = commands
        self._answers = answers
        self._pending = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode("utf-8") + b"\0")
        deadline = time.monotonic() + BROWSER_TIMEOUT_SECONDS
        while True:
            answer = self._receive(deadline, method)
            if answer.get("id") != self._next_id:
                self.events.append(answer)
                continue
            if "error" in answer:
                raise AssertionError(f"{method}: {answer['error']}")
            result: dict[str, Any] = answer["result"]
            return result

    def _receive(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._answers], [], [], remaining)[0]:
                raise AssertionError(f"Chromium did not answer {method} within {BROWSER_TIMEOUT_SECONDS} s")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise AssertionError(f"Chromium closed the protocol pipe (exit code {self.process.poll()})")
            self._pending += chunk
        message, self._pending = self._pending.split(b"\0", 1)
        answer: dict[str, Any] = json.loads(message)
        return answer

    def open_page(self, url: str) -> Page:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):  # Runtime and Log report exceptions and CSP refusals
            self.call(f"{domain}.enable", session)
        self.call(
            "Emulation.setDeviceMetricsOverride", session, deviceScaleFactor=1, mobile=False, **VIEWPORT
        )
        self.call("Emulation.setTimezoneOverride", session, timezoneId=BROWSER_TIME_ZONE)
        self.call("Page.navigate", session, url=url)
        return page


@dataclass
class Page:
    browser: DevTools
    session: str

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call(
            "Runtime.evaluate", self.session, expression=expression, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def settled(self) -> str:
        """body[data-ready]: "true" once every chart is drawn, "error" after a failure (bounded wait)."""
        state: str = eventually(
            lambda: self.evaluate("document.body?.dataset.ready || null"),
            timeout=BROWSER_TIMEOUT_SECONDS,
            what="the dashboard finished loading",
        )
        return state

    def problems(self) -> list[str]:
        """Script exceptions and Content-Security-Policy refusals reported so far."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(json.dumps(event["params"]["exceptionDetails"]))
            elif "Content Security Policy" in json.dumps(event.get("params", {})):
                found.append(json.dumps(event["params"]))
        return found

    def screenshot(self) -> bytes:
        return base64.b64decode(
            self.browser.call("Page.captureScreenshot", self.session, format="png")["data"]
        )


def _above_stdio(fd: int) -> int:
    """The same pipe end at a number of at least 10 (close-on-exec), so that placing the two ends at
    3 and 4 in the child cannot overwrite one with the other."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@contextmanager
def headless_chromium(profile: Path, *, trusted_spki: str) -> Iterator[DevTools]:
    to_browser_read, to_browser_write = map(_above_stdio, os.pipe())
    from_browser_read, from_browser_write = map(_above_stdio, os.pipe())

    def place_protocol_pipe() -> None:  # runs in the child: the protocol's fds 3 and 4, inherited
        os.dup2(to_browser_read, 3)
        os.dup2(from_browser_write, 4)

    arguments = [
        "--headless",
        "--remote-debugging-pipe",
        f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={trusted_spki}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--hide-scrollbars",
        "about:blank",
    ]
    if (
        os.geteuid() == 0
    ):  # Chromium refuses to start its sandbox as root (CI containers, `make test` as root)
        arguments.insert(0, "--no-sandbox")
    with (profile.parent / "chromium.log").open("wb") as log:
        process = subprocess.Popen(
            [CHROMIUM, *arguments],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            # Python's own descriptors are close-on-exec (PEP 446), so only 0-2 and the pipe pass.
            close_fds=False,
            preexec_fn=place_protocol_pipe,
        )
    os.close(to_browser_read)
    os.close(from_browser_write)
    browser = DevTools(process, to_browser_write, from_browser_read)
    try:
        yield browser
    finally:
        os.close(to_browser_write)  # end of the pipe: Chromium exits
        os.close(from_browser_read)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_spki_sha256(host: LocalHost) -> str:
    """base64 SHA-256 of the public key the host serves, once its certificate verifies against the CA."""
    pem = ssl.get_server_certificate(("127.0.0.1", host.port), ca_certs=str(host.state_dir / CA_FILE))
    spki = x509.load_pem_x509_certificate(pem.encode("ascii")).public_key()
    der = spki.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


# --- The local host: a workspace, signed posts, the query API --------------------------------------


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    primary_key: str
    reader_key: str


def new_workspace(host: LocalHost) -> Workspace:
    result = subprocess.run(
        [str(SLUICE_COMMAND), "workspace", "create", "--plan", "free", "--json"],
        cwd=REPO_ROOT,
        env=host.env,
        capture_output=True,
        timeout=REQUEST_TIMEOUT_SECONDS * 3,
    )
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    created = json.loads(result.stdout)
    return Workspace(created["workspace_id"], created["primary_key"], created["reader_key"])


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request(
    host: LocalHost, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
) -> Reply:
    """`path` goes on the wire as given: nothing normalises a `..` on the way."""
    context = ssl.create_default_context(cafile=str(host.state_dir / CA_FILE))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", host.port, context=context, timeout=REQUEST_TIMEOUT_SECONDS
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def post_records(host: LocalHost, workspace: Workspace, log_type: str, records: list[dict[str, Any]]) -> None:
    """A Data Collector API post whose records carry their own TimeGenerated (up to 2 days back)."""
    body = json.dumps(records).encode("utf-8")
    x_ms_date = sharedkey.rfc1123(datetime.now(UTC))
    authorization = sharedkey.authorization_header(
        workspace.workspace_id,
        workspace.primary_key,
        content_length=len(body),
        content_type="application/json",
        x_ms_date=x_ms_date,
    )
    headers = {
        "Authorization": authorization,
        "Content-Type": "application/json",
        "Log-Type": log_type,
        "x-ms-date": x_ms_date,
        "time-generated-field": "TimeGenerated",
    }
    response = request(host, "POST", "/api/logs?api-version=2016-04-01", body=body, headers=headers)
    assert response.status == 200, response.body


def query(host: LocalHost, workspace: Workspace, resource: str, **params: str) -> dict[str, Any]:
    path = f"/api/workspaces/{workspace.workspace_id}/{resource}?{urlencode(params)}"
    response = request(host, "GET", path, headers={"Authorization": f"Key {workspace.reader_key}"})
    assert response.status == 200, response.body
    document: dict[str, Any] = json.loads(response.body)
    return document


def aggregated_records(host: LocalHost, workspace: Workspace, since: datetime) -> int:
    """Records in the daily usage since `since`, over every page."""
    params = {"granularity": "day", "from": _iso(since), "limit": str(PAGE_LIMIT)}
    total = 0
    while True:
        page = query(host, workspace, "usage", **params)
        total += sum(int(row["records"]) for row in page["rows"])
        if page["continuation"] is None:
            return total
        params["continuation"] = page["continuation"]


def dashboard_url(host: LocalHost, workspace_id: str, key: str) -> str:
    """Signed in by the fragment, percent-encoded ("+" in a base64 key stays a "+")."""
    return f"{host.endpoint}/dashboard/#{urlencode({'workspace': workspace_id, 'key': key}, quote_via=quote)}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- What the workspace sends ----------------------------------------------------------------------

COMPUTERS = ("web-1", "web-2", "db-1")
# Machines that send one heartbeat a day: enough (a row per machine and day) that the daily usage
# takes more than one page of PAGE_LIMIT rows, so the charts are right only if the page reads them all.
FLEET = tuple(f"vm-{n:03}" for n in range(400))
PAGE_LIMIT = 1000  # the API's largest page, which the dashboard asks for
# object, counter, instance, a typical value: the four counters every computer reports hourly.
COUNTERS = (
    ("Processor", "% Processor Time", "_Total", 35.0),
    ("Memory", "Available MBytes", "", 3100.0),
    ("LogicalDisk", "% Free Space", "C:", 61.0),
    ("Network Adapter", "Bytes Received/sec", "eth0", 52000.0),
)
RARE_COUNTER = ("System", "Processes", "", 212.0)  # two samples: not among the top four


def usage_records(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Custom logs over three days (today's, yesterday's and the day before's, as far back as the
    Data Collector API takes a TimeGenerated), heartbeats from a fleet on each of them, and hourly Perf
    samples over the last PERF_HOURS."""
    app_trace = [
        {
            "TimeGenerated": _iso(now - age),
            "Computer": COMPUTERS[n % 2],
            "Level": "Info",
            "Message": f"request {n}",
        }
        for age, count in ((timedelta(hours=47), 40), (timedelta(hours=26), 90), (timedelta(minutes=10), 140))
        for n in range(count)
    ]
    heartbeat = [
        {"TimeGenerated": _iso(now - timedelta(hours=hour)), "Computer": computer, "OSType": "Linux"}
        for hour in range(PERF_HOURS)
        for computer in COMPUTERS
    ] + [
        {"TimeGenerated": _iso(now - timedelta(hours=hours)), "Computer": computer, "OSType": "Linux"}
        for hours in (46, 25, 2)
        for computer in FLEET
    ]
    perf = [
        {
            "TimeGenerated": _iso(now - timedelta(hours=hour)),
            "Computer": computer,
            "ObjectName": object_name,
            "CounterName": counter_name,
            "InstanceName": instance,
            "CounterValue": typical * (1 + 0.3 * ((hour * 7 + index * 3) % 5 - 2) / 2),
        }
        for hour in range(PERF_HOURS)
        for index, computer in enumerate(COMPUTERS)
        for object_name, counter_name, instance, typical in COUNTERS
    ]
    perf += [
        {
            "TimeGenerated": _iso(now - timedelta(hours=hour)),
            "Computer": "db-1",
            "ObjectName": RARE_COUNTER[0],
            "CounterName": RARE_COUNTER[1],
            "InstanceName": RARE_COUNTER[2],
            "CounterValue": RARE_COUNTER[3],
        }
        for hour in range(2)
    ]
    return {"AppTrace": app_trace, "Heartbeat": heartbeat, "Perf": perf}


def utc_day(text: str) -> str:
    return text[:10]


# --- The tests ------------------------------------------------------------------------------------

MARKS = """({
  fragment: location.hash,
  error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
  dashboardHidden: document.getElementById("dashboard").hidden,
  signInHidden: document.getElementById("sign-in").hidden,
  signInWorkspace: document.querySelector("#sign-in [name=workspace]").value,
  stored: sessionStorage.length,
  recordDays: Object.fromEntries([...document.querySelectorAll("#records-per-day .bar-group")]
    .map((group) => [group.dataset.category, Number(group.dataset.total)])),
  recordSeries: [...new Set([...document.querySelectorAll("#records-per-day rect[data-series]")]
    .map((bar) => bar.dataset.series))].sort(),
  byteDays: Object.fromEntries([...document.querySelectorAll("#bytes-per-day .bar-group")]
    .map((group) => [group.dataset.category, Number(group.dataset.total)])),
  computers: [...document.querySelectorAll("#top-computers .bar")]
    .map((bar) => [bar.dataset.label, Number(bar.dataset.value)]),
  counters: Object.fromEntries([...document.querySelectorAll("#perf-counters path.line")]
    .map((line) => [line.dataset.series, Number(line.dataset.points)])),
  gauge: [...document.querySelectorAll("#cap-gauge .gauge-bar")]
    .map((bar) => ({value: Number(bar.dataset.value), limit: Number(bar.dataset.limit)})),
  plan: document.getElementById("plan").textContent,
})"""


def test_given_usage_and_perf_data_then_the_dashboard_draws_every_chart_and_is_screenshot(
    local_host: HostSetup, tmp_path: Path
) -> None:
    host = local_host.start()
    workspace = new_workspace(host)
    now = datetime.now(UTC)
    sent = usage_records(now)
    for log_type, records in sent.items():
        post_records(host, workspace, log_type, records)
    everything = [(log_type, record) for log_type, records in sent.items() for record in records]
    three_days_back = (now - timedelta(days=3)).replace(hour=0, minute=0, second=0)
    eventually(
        lambda: aggregated_records(host, workspace, three_days_back) == len(everything) or None,
        timeout=PROCESSED_TIMEOUT_SECONDS,
        what=f"{len(everything)} records aggregated",
    )
    first_page = query(
        host, workspace, "usage", granularity="day", limit=str(PAGE_LIMIT), **{"from": _iso(three_days_back)}
    )
    assert first_page["continuation"] is not None  # the premise: the charts need more than one page
    summary = query(host, workspace, "summary")

    url = dashboard_url(host, workspace.workspace_id, workspace.reader_key)
    with headless_chromium(tmp_path / "chromium", trusted_spki=server_spki_sha256(host)) as browser:
        page = browser.open_page(url)
        assert page.settled() == "true", page.evaluate(MARKS)
        marks = page.evaluate(MARKS)
        problems = page.problems()
        screenshot = page.screenshot()

    assert problems == []
    assert marks["fragment"] == ""  # the key does not stay in the address bar or the history
    assert marks["error"] is None
    assert marks["recordDays"] == dict(Counter(utc_day(record["TimeGenerated"]) for _, record in everything))
    assert marks["recordSeries"] == sorted(sent)
    assert marks["byteDays"].keys() == marks["recordDays"].keys()
    assert all(total > 0 for total in marks["byteDays"].values())
    recent = Counter(
        record["Computer"]
        for _, record in everything
        if datetime.fromisoformat(record["TimeGenerated"]) > now - timedelta(hours=PERF_HOURS)
    )
    top_ten = sorted(([c, n] for c, n in recent.items()), key=lambda item: (-item[1], item[0]))[:10]
    assert marks["computers"] == top_ten
    assert marks["counters"] == {f"{o} \\ {c}": PERF_HOURS for o, c, _, _ in COUNTERS}
    assert summary["today_bytes"] > 0 and summary["daily_cap_bytes"] is not None
    (gauge,) = marks["gauge"]
    assert (gauge["value"], gauge["limit"]) == (summary["today_bytes"], summary["daily_cap_bytes"])
    assert marks["plan"] == "free"

    assert screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(screenshot)
    if os.environ.get(UPDATE_SCREENSHOT_SETTING) == "1":
        README_SCREENSHOT.write_bytes(screenshot)


def test_given_a_wrong_reader_key_then_the_dashboard_says_so_and_shows_no_data(
    local_host: HostSetup, tmp_path: Path
) -> None:
    host = local_host.start()
    workspace = new_workspace(host)
    post_records(host, workspace, "AppTrace", [{"Computer": "web-1", "Message": "not for a stranger"}])
    wrong_key = new_shared_key()

    url = dashboard_url(host, workspace.workspace_id, wrong_key)
    with headless_chromium(tmp_path / "chromium", trusted_spki=server_spki_sha256(host)) as browser:
        page = browser.open_page(url)
        assert page.settled() == "error"
        marks = page.evaluate(MARKS)
        problems = page.problems()

    assert problems == []
    assert "wrong workspace or key" in marks["error"]
    assert marks["dashboardHidden"] and not marks["signInHidden"]
    assert marks["signInWorkspace"] == workspace.workspace_id
    assert marks["stored"] == 0  # a refused key is not kept
    assert (marks["recordDays"], marks["computers"], marks["counters"], marks["gauge"]) == ({}, [], {}, [])


DASHBOARD_FILES = {
    "/dashboard/": "text/html; charset=utf-8",
    "/dashboard/index.html": "text/html; charset=utf-8",
    "/dashboard/app.js": "text/javascript; charset=utf-8",
    "/dashboard/chart.js": "text/javascript; charset=utf-8",
    "/dashboard/style.css": "text/css; charset=utf-8",
}
# Each names a file outside dashboard/static/ (or the folder itself): the router decodes %2f and %2e
# into the path parameter, so these reach the function as `../__init__.py` and the like.
ESCAPES = (
    "/dashboard/../host.json",
    "/dashboard/..%2f__init__.py",
    "/dashboard/%2e%2e%2ffunction.json",
    "/dashboard/%2e%2e%2f%2e%2e%2fhost.json",
    "/dashboard/static/index.html",
    "/dashboard/%2fetc%2fpasswd",
    "/dashboard/..%5c__init__.py",
    "/dashboard/.",
)


def test_given_the_dashboard_route_then_only_its_own_files_are_served_with_a_strict_policy(
    local_host: HostSetup,
) -> None:
    host = local_host.start()

    for path, content_type in DASHBOARD_FILES.items():
        reply = request(host, "GET", path)
        assert reply.status == 200, path
        assert reply.headers["Content-Type"] == content_type, path
        assert reply.headers["Content-Security-Policy"] == CSP, path
        assert reply.headers["X-Content-Type-Options"] == "nosniff", path
    for path in ESCAPES:
        reply = request(host, "GET", path)
        assert reply.status == 404, path
        assert reply.body == b"Not found.", path
    assert request(host, "POST", "/dashboard/").status == 405

"""Synthetic Data Collector batches shaped like what agents post: Perf counter samples and Syslog lines,
seeded so that every run posts the same bytes. The values vary the way real ones do (hosts, PIDs,
addresses, timestamps), so the gzip ratio is realistic rather than that of a repeated record."""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

MB = 1_000_000  # decimal megabyte: throughput figures are in MB/s
LOG_TYPE = "SluiceBench"
# What a typical client (Fluent Bit, the Azure Monitor samples) uses when it gzips a post.
CLIENT_GZIP_LEVEL = 6
_START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_HOSTS = 200
_PERF_COUNTERS = (
    ("Processor", "% Processor Time", "_Total"),
    ("Memory", "Available MBytes", "Memory"),
    ("Memory", "% Used Memory", "Memory"),
    ("LogicalDisk", "% Free Space", "/"),
    ("LogicalDisk", "Disk Reads/sec", "/dev/sda1"),
    ("Network", "Total Bytes Received", "eth0"),
    ("Network", "Total Bytes Transmitted", "eth0"),
)
_FACILITIES = ("auth", "authpriv", "daemon", "kern", "syslog", "user", "cron")
_SEVERITIES = ("debug", "info", "info", "info", "notice", "warning", "err")
_PROCESSES = ("sshd", "systemd", "cron", "kernel", "dockerd", "nginx", "sudo")
_USERS = ("azureuser", "deploy", "root", "backup", "svc-metrics", "jenkins")


@dataclass(frozen=True, slots=True)
class Batch:
    """One post: its JSON (what the handler parses and hashes) and its gzip (what a client sends)."""

    label: str
    log_type: str
    json_bytes: bytes
    gzip_bytes: bytes
    record_count: int


def make_batch(target_bytes: int, *, seed: int) -> Batch:
    """A JSON array of about `target_bytes` (just over it), two Syslog lines to one Perf sample."""
    rng = random.Random(seed)
    moment = _START
    records: list[dict[str, Any]] = []
    size = 2  # the array's brackets
    while size < target_bytes:
        moment += timedelta(microseconds=rng.randrange(1, 20_000))
        record = _perf_record(rng, moment) if len(records) % 3 == 2 else _syslog_record(rng, moment)
        records.append(record)
        size += len(orjson.dumps(record)) + 1  # and its comma
    json_bytes = orjson.dumps(records)
    return Batch(
        label=f"{target_bytes / MB:g} MB",
        log_type=LOG_TYPE,
        json_bytes=json_bytes,
        gzip_bytes=gzip.compress(json_bytes, compresslevel=CLIENT_GZIP_LEVEL, mtime=0),
        record_count=len(records),
    )


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _host(rng: random.Random) -> tuple[str, str]:
    index = rng.randrange(_HOSTS)
    return f"vm-web-{index:03d}", f"10.{index // 100}.{index % 100}.{rng.randrange(2, 250)}"


def _resource_id(computer: str) -> str:
    return (
        "/subscriptions/6f0b2d4e-8c1a-4f57-9e3b-2a7d5c9e1b40/resourceGroups/rg-prod-web/providers/"
        f"Microsoft.Compute/virtualMachines/{computer}"
    )


def _perf_record(rng: random.Random, moment: datetime) -> dict[str, Any]:
    computer, _ = _host(rng)
    object_name, counter_name, instance_name = rng.choice(_PERF_COUNTERS)
    return {
        "TimeGenerated": _timestamp(moment),
        "Computer": computer,
        "ObjectName": object_name,
        "CounterName": counter_name,
        "InstanceName": instance_name,
        "CounterValue": round(rng.uniform(0, 100_000) if "Bytes" in counter_name else rng.uniform(0, 100), 3),
        "SampleCount": 1,
        "_ResourceId": _resource_id(computer),
    }


def _syslog_record(rng: random.Random, moment: datetime) -> dict[str, Any]:
    computer, host_ip = _host(rng)
    process = rng.choice(_PROCESSES)
    return {
        "TimeGenerated": _timestamp(moment),
        "Computer": computer,
        "HostIP": host_ip,
        "Facility": rng.choice(_FACILITIES),
        "SeverityLevel": rng.choice(_SEVERITIES),
        "ProcessName": process,
        "ProcessID": rng.randrange(1, 65_536),
        "SyslogMessage": _syslog_message(rng, process),
        "_ResourceId": _resource_id(computer),
    }


def _syslog_message(rng: random.Random, process: str) -> str:
    address = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
    user = rng.choice(_USERS)
    match process:
        case "sshd":
            return (
                f"Accepted publickey for {user} from {address} port {rng.randrange(1024, 65_536)} ssh2: "
                f"RSA SHA256:{rng.getrandbits(256):064x}"
            )
        case "sudo":
            return (
                f"{user} : TTY=pts/{rng.randrange(8)} ; PWD=/home/{user} ; USER=root ; "
                "COMMAND=/usr/bin/systemctl restart nginx"
            )
        case "nginx":
            return (
                f'{address} - - "GET /api/v1/items/{rng.randrange(100_000)} HTTP/1.1" '
                f"{rng.choice((200, 200, 200, 304, 404, 500))} {rng.randrange(100, 50_000)} "
                f"{rng.random():.3f}"
            )
        case "kernel":
            return (
                f"[{rng.uniform(0, 1e6):.6f}] IN=eth0 OUT= SRC={address} DST=10.0.0.4 "
                f"LEN={rng.randrange(40, 1500)} PROTO=TCP SPT={rng.randrange(1024, 65_536)} "
                "DPT=443 WINDOW=64240 SYN"
            )
        case _:
            return (
                f"Started session {rng.randrange(1, 100_000)} of user {user} "
                f"(unit session-{rng.randrange(1, 100_000)}.scope, took {rng.randrange(1, 500)} ms)"
            )

#!/usr/bin/env python3
"""Turns the JSON lines bench/compare.sh collected into BENCHMARKS.md.

Each input line is one sotto-bench `--json` result with `table`, `title` and
`label` added by compare.sh (or an `error` if that run failed). The output
is the generated section of BENCHMARKS.md: date, machine, method, and one
table per scenario with a row per server. If BENCHMARKS.md already exists,
only the text between the BEGIN/END markers is replaced, so hand-written
analysis around it (profiles, before/after figures) survives a re-run.

Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import sys

BEGIN = "<!-- BEGIN bench/compare.sh output: regenerated on every run -->"
END = "<!-- END bench/compare.sh output -->"


def machine(packages):
    """Facts about this machine, from /proc and the arguments."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    facts = [
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", model),
        ("RAM", mem),
        ("Kernel", f"{platform.system()} {platform.release()}"),
    ]
    for entry in packages:
        name, _, version = entry.partition("=")
        facts.append((name, version))
    return facts


def get(row, path):
    """Looks up a dotted key path; None if absent."""
    value = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def num(value, digits=0):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if digits == 0:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def ms(value):
    """Microseconds to milliseconds."""
    return "–" if value is None else f"{value / 1000:,.2f}"


def mb(value):
    """KiB to MiB."""
    return "–" if value is None else f"{value / 1024:,.1f}"


# Columns: (header, key path, formatter). A column is shown only if some row
# of the table has a value for it.
COLUMNS = [
    ("clients", "clients", num),
    ("senders", "senders", num),
    ("deliveries/s", "deliveries_per_s", num),
    ("logins/s", "logins_per_s", lambda v: num(v, 1)),
    ("p50 ms", "latency_us.p50", ms),
    ("p99 ms", "latency_us.p99", ms),
    ("max ms", "latency_us.max", ms),
    ("lost", "lost", num),
    ("dup", "duplicated", num),
    ("join s", "join_time_s", lambda v: num(v, 2)),
    ("connect s", "connect_time_s", lambda v: num(v, 2)),
    ("RSS/conn KiB", "rss_per_conn_kb", lambda v: num(v, 1)),
    ("server CPU %", "server_cpu_pct", num),
    ("server RSS max MiB", "server_rss_kb_max", mb),
    ("bench CPU %", "bench_cpu_pct", num),
    # Validation: what each side spent per delivery, and the CPU nobody
    # used (if the bench had been the limit, it would be near 0 with the
    # bench's share at least the server's).
    ("server µs/delivery", "server_us_per_delivery", lambda v: num(v, 2)),
    ("bench µs/delivery", "bench_us_per_delivery", lambda v: num(v, 2)),
    ("CPU unused %", "cpu_unused_pct", num),
]

# Keys that are not columns: identification, or shown elsewhere.
KNOWN = {
    "table", "title", "label", "scenario", "protocol", "server", "duration_s",
    "messages_sent", "deliveries", "error", "tool",
} | {path.split(".")[0] for _, path, _ in COLUMNS}


def flatten(value, prefix=""):
    """Dotted keys of nested dicts (for figures this script does not know)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from flatten(inner, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), value


def validate(row):
    """Adds the validation figures derived from a row's CPU and rate."""
    rate = row.get("deliveries_per_s")
    server, bench = row.get("server_cpu_pct"), row.get("bench_cpu_pct")
    if rate and server is not None and bench is not None:
        row["server_us_per_delivery"] = server * 1e4 / rate
        row["bench_us_per_delivery"] = bench * 1e4 / rate
        row["cpu_unused_pct"] = max(0.0, 100.0 * (os.cpu_count() or 1) - server - bench)
    return row


# The cross-check: which figure of irc-check is compared with which of
# sotto-bench, per kind of run.
CHECKED = [
    ("deliveries/s", "deliveries_per_s", "deliveries_per_s"),
    ("logins/s", "logins_per_s", "logins_per_s"),
    ("connect s", "connect_time_s", "connect_s"),
    ("RSS/conn KiB", "rss_per_conn_kb", "rss_per_conn_kib"),
]


def cross_check(rows, checks):
    """A table setting irc-check's figures beside sotto-bench's."""
    out = [
        "| server | figure | sotto-bench | irc-check | irc-check / sotto-bench | irc-check lost | irc-check CPU % | server CPU % under irc-check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for check in checks:
        if "error" in check:
            notes.append(f"{check['label']}: irc-check **failed**: {check['error']}")
            continue
        bench = next((r for r in rows if r["label"] == check["label"] and "error" not in r), None)
        for name, bench_key, check_key in CHECKED:
            mine = check.get(check_key)
            if mine is None:
                continue
            theirs = None if bench is None else bench.get(bench_key)
            if bench is not None and theirs is None:
                continue
            ratio = f"{mine / theirs:.2f}" if theirs else "–"
            digits = 0 if name in ("deliveries/s",) else (1 if name != "connect s" else 2)
            out.append(
                f"| {check['label']} | {name} | {num(theirs, digits)} | {num(mine, digits)} | {ratio} "
                f"| {num(check.get('lost'))} | {num(check.get('check_cpu_pct'))} "
                f"| {num(check.get('server_cpu_pct'))} |"
            )
    if notes:
        out.append("")
        out += [f"- {note}" for note in notes]
    return "\n".join(out)


def table(rows):
    """One markdown table for the rows of one scenario."""
    columns = [c for c in COLUMNS if any(get(r, c[1]) is not None for r in rows)]
    # Figures this script has no column for become columns of their own
    # (numbers) or notes under the table (text), so nothing is dropped.
    extra, notes = [], []
    for row in rows:
        for key, value in row.items():
            if key in KNOWN:
                continue
            for path, inner in flatten(value, f"{key}."):
                if isinstance(inner, str):
                    notes.append(f"{row['label']}, {path}: {inner}")
                elif inner is not None and path not in extra:
                    extra.append(path)
    sent = any(r.get("messages_sent") is not None for r in rows)
    headers = ["server", *[c[0] for c in columns], *extra] + (["sent"] if sent else [])
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if "error" in row:
            out.append(f"| {row['label']} | " + " | ".join(["–"] * (len(headers) - 1)) + " |")
            notes.append(f"{row['label']}: **failed**: {row['error']}")
            continue
        cells = [row["label"]]
        cells += [fmt(get(row, path)) for _, path, fmt in columns]
        for path in extra:
            value = get(row, path)
            cells.append(num(value, 2 if isinstance(value, float) else 0))
        if sent:
            cells.append(num(row.get("messages_sent")))
        out.append("| " + " | ".join(cells) + " |")
    if notes:
        out.append("")
        out += [f"- {note}" for note in notes]
    return "\n".join(out)


def render(results, args):
    tables, checks = {}, {}
    for row in results:
        if row.get("tool") == "irc-check":
            checks.setdefault(row["table"], []).append(row)
        else:
            tables.setdefault(row["table"], []).append(validate(row))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "",
        f"## Sotto vs InspIRCd vs ngIRCd ({now})",
        "",
        "Generated by `bench/compare.sh` (raw JSON lines from `sotto-bench --json`,",
        "tables by `bench/report.py`).",
        "",
        "### Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in machine(args.packages)]
    lines += [
        "",
        "### Method",
        "",
        "- One server runs at a time, started fresh for each run and stopped after it;",
        "  all three listen on 127.0.0.1 and every client connects over **TLS 1.3**",
        "  (Sotto: rustls; InspIRCd and ngIRCd: GnuTLS, priority",
        "  `NORMAL:-VERS-ALL:+VERS-TLS1.3`).",
        "- **Sotto stores every message durably** before acknowledging or delivering",
        "  it: SQLite in WAL mode with `synchronous=FULL` (an fsync per group commit).",
        "  The IRC servers store nothing.",
        "- The load generator (`sotto-bench`) and the server **share the same",
        f"  {os.cpu_count()} cores** over loopback: `bench CPU %` is CPU the server",
        "  could not use. CPU percentages are of one core (200% = both cores).",
        f"- Each run: {args.warmup:g} s warmup, then {args.duration:g} s measured.",
        "  deliveries/s = messages received summed over all clients / measured",
        "  seconds; latency = receive time minus the send time carried in the",
        "  message; lost/dup = messages never received / received twice.",
        "- Validation columns: `server µs/delivery` and `bench µs/delivery` are",
        "  each process's CPU time per delivery over the measured window, and",
        "  `CPU unused %` is what neither used of all cores: a row where the",
        "  bench spent more per delivery than the server and nothing was left",
        "  would be measuring the bench. Each IRC row is measured again by",
        "  `irc-check` (`crates/sotto-bench/src/bin/irc-check.rs`), an",
        "  independent IRC load generator, against a fresh server.",
        "- Sotto: `sotto serve --requests-per-second 1000000 --request-burst 1000000",
        "  --outbound-buffer 1048576` (1 MiB, so the slow-consumer run reaches the",
        "  cut-off). IRC servers: configs in `bench/irc/` (connection",
        "  limits raised for loopback, flood and penalty limits off, no DNS or",
        "  ident lookups).",
        "- IRC has no lobby/group distinction: IRC runs use one channel, `#bench`,",
        "  and a login is just registration (NICK/USER); Sotto logins verify an",
        "  Argon2id password hash (19 MiB, 2 iterations).",
        "",
    ]
    for key, rows in tables.items():
        lines += [f"### {rows[0]['title']}", "", table(rows), ""]
        if key in checks:
            lines += [
                "Cross-check of the IRC rows with `irc-check` (a second IRC load",
                "generator sharing no code with sotto-bench; a fresh server per run):",
                "",
                cross_check(rows, checks[key]),
                "",
            ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="JSON lines from compare.sh")
    parser.add_argument("--output", required=True, help="BENCHMARKS.md to write or update")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--packages", action="append", default=[], help="NAME=VERSION")
    args = parser.parse_args()

    results = []
    with open(args.results, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{args.results}:{number}: {e}")
    section = render(results, args)

    try:
        with open(args.output, encoding="utf-8") as f:
            existing = f.read()
    except FileNotFoundError:
        existing = "# Benchmarks\n\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.S)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: section, existing)
    else:
        updated = existing.rstrip("\n") + "\n\n" + section
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(updated)


if __name__ == "__main__":
    main()

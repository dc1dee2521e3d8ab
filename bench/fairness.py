#!/usr/bin/env python3
"""Herald's fairness benchmark: one tenant's campaign must not hold another
tenant's single send back, nor lose its own throughput.

    python3 bench/fairness.py [--quick] [--no-build] [--latency-ms 100]
                              [--scenarios tenants,single,single-bulk]
                              [--out bench/results/2026-12-04-fairness.txt]

The issue's target: tenant A queues 10,000 messages (ten batches of 1,000) at
cap 80; tenant B's single send reaches the fake Graph API within 2 s (p99 over
50 sends), and A's throughput stays >= 0.9 x cap.

Run on demand; it is not part of the test suite. Each scenario gets a fresh
fake Graph API (examples/bench_graph_fake.rs, CAP_MPS=--cap, LATENCY_MS=
--latency-ms) and a fresh herald-gateway in embedded mode (a new
HERALD_DATA_DIR; DELIVERY=whatsapp, WHATSAPP_MAX_MPS=--cap,
WHATSAPP_PAIR_RATE=0, one deployment number). Then:
  1. A posts --batches batches of --batch-size to /api/v1/send/batch, one
     after the other; every recipient is distinct (+1415555NNNN), every text
     carries the run's marker
  2. --b-delay seconds after A's last batch was answered, B sends --b-count
     single sends, one every --b-interval-ms, each to its own recipient
     (+1416555NNNN) so the fake's GET /accepts tells when it arrived
  3. waits until the fake has accepted every text, --max-wait passes from A's
     first batch, or nothing reaches the fake for --stall seconds

Scenarios:
  tenants      TENANTS_FILE with tenants a and b (keys a and b, fair_share 1,
               no number of their own: both send from the deployment's number,
               the hard case); A's entries at priority --a-priority
  single       no TENANTS_FILE, one key sends A's and B's traffic; A's entries
               at --a-priority (normal by default, B's priority): B waits
               behind A, first due first served (the baseline)
  single-bulk  no TENANTS_FILE, A's entries without a priority (a batch's
               default, bulk): B's normal send goes first by priority alone

B's latency = the fake's arrival time of B's request (its accept log) minus
the moment the gateway's 202 reached this script (both Unix ms, one machine's
clock). Every process it starts is stopped by its PID at the end, on error and
Ctrl-C too. Everything listens on 127.0.0.1. HERALD_BENCH_KEEP=1 keeps the
work dir (logs, the fake's accept log per scenario).
"""
import argparse
import datetime
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid

sys.dont_write_bytecode = True  # no bench/__pycache__ from the imports below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import delivery as d  # noqa: E402  (process and HTTP helpers)
import fleet  # noqa: E402  (steady_rate)

ROOT, RELEASE = d.ROOT, d.RELEASE
A_KEY, B_KEY = "fair-a-key-0123456789abcdef", "fair-b-key-0123456789abcdef"
SINGLE_KEY = d.KEY
PHONE_NUMBER_ID = "106540352242922"
A_PREFIX, B_PREFIX = "+1415555", "+1416555"
# The Cloud API request (and so the fake's accept log) names the recipient without the "+".
A_SEEN, B_SEEN = A_PREFIX[1:], B_PREFIX[1:]
TARGET_S = 2.0
SCENARIOS = ("tenants", "single", "single-bulk")

TENANTS_TOML = """\
[[tenant]]
id = "a"
keys = ["a"]
fair_share = 1

[[tenant]]
id = "b"
keys = ["b"]
fair_share = 1
"""


def unix_ms():
    return time.time() * 1000


# --- processes -------------------------------------------------------------

def gateway_env(scenario, fake_port, data_dir, args, work):
    env = {"DELIVERY": "whatsapp", "WHATSAPP_ACCESS_TOKEN": "x", "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
           "WHATSAPP_API_BASE_URL": f"http://127.0.0.1:{fake_port}", "WHATSAPP_MAX_MPS": str(args.cap),
           "WHATSAPP_PAIR_RATE": "0", "HERALD_DATA_DIR": data_dir}
    if scenario == "tenants":
        path = os.path.join(work, "tenants.toml")
        with open(path, "w") as f:
            f.write(TENANTS_TOML)
        env.update(API_KEYS=f"a:{A_KEY},b:{B_KEY}", TENANTS_FILE=path)
    else:
        env["API_KEYS"] = f"bench:{SINGLE_KEY}"
    return env


# --- HTTP ------------------------------------------------------------------

def post_json(port, path, key, body, timeout=60):
    """One POST on a fresh connection; returns (status, parsed body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json", "x-api-key": key})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


def send_a(port, key, args, marker, priority):
    """A's batches, one after the other. Returns (accepted, problems, seconds)."""
    accepted, problems, started = 0, [], time.monotonic()
    for b in range(args.batches):
        messages = []
        for i in range(args.batch_size):
            n = b * args.batch_size + i
            entry = {"to": f"{A_PREFIX}{n:04d}", "message": f"fair A {n} {marker}"}
            if priority != "bulk":
                entry["priority"] = priority
            messages.append(entry)
        status, answer = post_json(port, "/api/v1/send/batch", key, {"messages": messages})
        got = (answer or {}).get("accepted", 0) if status == 200 else 0
        accepted += got
        if got != len(messages):
            problems.append(f"batch {b}: HTTP {status}, accepted {got} of {len(messages)}")
    return accepted, problems, time.monotonic() - started


def send_b(port, key, args, marker, start_at):
    """B's single sends on schedule. Returns [(to, answered Unix ms or None, status)]."""
    out = []
    for i in range(args.b_count):
        pause = start_at + i * args.b_interval_ms / 1000 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        to = f"{B_PREFIX}{i:04d}"
        try:
            status, _ = post_json(port, "/api/v1/send", key, {"to": to, "message": f"fair B {i} {marker}"},
                                  timeout=30)
        except (OSError, http.client.HTTPException) as e:
            status = f"connection error ({type(e).__name__})"
        out.append((to, unix_ms() if status == 202 else None, status))
    return out


class Sampler(threading.Thread):
    """Once a second: the gateway's queue depth and in-flight target (/health)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.samples, self.stopped = port, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                health = d.get_json(self.port, "/health") or {}
                self.samples.append((unix_ms(), d.find_key(health, "depth"), d.find_key(health, "inFlightTarget")))
            except (OSError, ValueError):
                pass
            self.stopped.wait(1.0)


def wait_drained(fake_port, expected, deadline, stall):
    last, last_change = -1, time.monotonic()
    while True:
        stats = d.get_json(fake_port, "/stats")
        now = time.monotonic()
        if stats["unique_bodies"] >= expected:
            return "all delivered"
        if stats["requests"] != last:
            last, last_change = stats["requests"], now
        if now - last_change > stall:
            return f"stalled {stall}s"
        if now > deadline:
            return "time limit"
        time.sleep(0.25)


# --- one scenario ----------------------------------------------------------

def run_scenario(scenario, args, work):
    data_dir = tempfile.mkdtemp(prefix=f"data-{scenario}-", dir=work)
    fake_args = types.SimpleNamespace(fake_window="all")
    fake, fake_port = d.start_fake(args.cap, args.latency_ms, fake_args, work)
    gateway, sampler = None, None
    try:
        env = gateway_env(scenario, fake_port, data_dir, args, work)
        gateway, port, log_path = d.start_gateway(env, work, f"gateway-{scenario}")
        a_key, b_key = (A_KEY, B_KEY) if scenario == "tenants" else (SINGLE_KEY, SINGLE_KEY)
        priority = "bulk" if scenario == "single-bulk" else args.a_priority
        marker = uuid.uuid4().hex[:8]
        sampler = Sampler(port)
        sampler.start()
        t0 = time.monotonic()
        a_sent, problems, a_enqueue_s = send_a(port, a_key, args, marker, priority)
        b_sends = send_b(port, b_key, args, marker, time.monotonic() + args.b_delay)
        b_sent = sum(1 for _, at, _ in b_sends if at is not None)
        why = wait_drained(fake_port, a_sent + b_sent, t0 + args.max_wait, args.stall)
        drain_s = time.monotonic() - t0
        time.sleep(1.5 + 2 * args.latency_ms / 1000)  # answers in flight land; a late duplicate shows
        sampler.stopped.set()
        stats, accepts = d.get_json(fake_port, "/stats"), d.get_json(fake_port, "/accepts")
        if args.keep_logs:
            with open(os.path.join(work, f"{scenario}-fake.json"), "w") as f:
                json.dump({"stats": stats, "accepts": accepts, "b_sends": b_sends}, f)
        if why != "all delivered":
            problems.append(f"gateway log tail:\n{d.log_tail(log_path, 5)}")
        return summarise(scenario, priority, args, a_sent, a_enqueue_s, b_sends, stats, accepts,
                         sampler.samples, why, drain_s, problems)
    finally:
        if sampler:
            sampler.stopped.set()
        if gateway:
            d.stop(gateway)
        d.stop(fake)
        shutil.rmtree(data_dir, ignore_errors=True)


# --- figures ---------------------------------------------------------------

def percentile(sorted_values, p):
    """Nearest rank (p99 of 50 values is the largest)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def b_latencies(b_sends, accepts):
    """Per B send answered 202: (latency s or None if never accepted, A accepts
    between its 202 and its arrival)."""
    first = {}
    for at, to in accepts["accepts"]:
        first.setdefault(to, at)
    a_times = sorted(at for at, to in accepts["accepts"] if to.startswith(A_SEEN))
    out = []
    for to, answered, _ in b_sends:
        if answered is None:
            continue
        arrived = first.get(to.lstrip("+"))
        if arrived is None:
            out.append((None, None))
            continue
        ahead = sum(1 for t in a_times if answered < t <= arrived)
        out.append(((arrived - answered) / 1000, ahead))
    return out


def rate_between(times, start, end):
    """Accepts per second with arrival in [start, end] (Unix ms)."""
    if end is None or start is None or end <= start:
        return None
    return sum(1 for t in times if start <= t <= end) / ((end - start) / 1000)


def summarise(scenario, priority, args, a_sent, a_enqueue_s, b_sends, stats, accepts, samples, why,
              drain_s, problems):
    a_times = sorted(at for at, to in accepts["accepts"] if to.startswith(A_SEEN))
    b_times = sorted(at for at, to in accepts["accepts"] if to.startswith(B_SEEN))
    measured = b_latencies(b_sends, accepts)
    lat = sorted(x for x, _ in measured if x is not None)
    ahead = sorted(a for _, a in measured if a is not None)
    answered = [at for _, at, _ in b_sends if at is not None]
    window = (min(answered), max(b_times)) if answered and b_times else (None, None)
    a_window = rate_between(a_times, *window)
    all_window = rate_between(sorted(a_times + b_times), *window)
    a_drain = (len(a_times) - 1) / ((a_times[-1] - a_times[0]) / 1000) \
        if len(a_times) > 1 and a_times[-1] > a_times[0] else None
    steady = fleet.steady_rate(a_times)
    in_window = [s for s in samples if window[0] and window[0] <= s[0] <= window[1]]
    targets = [t for _, _, t in in_window if t is not None]
    depths = [q for _, q, _ in in_window if q is not None]
    ratio = (lambda r: r / args.cap if r is not None else None)
    return {
        "scenario": scenario, "a_priority": priority, "a_sent": a_sent, "a_enqueue_s": a_enqueue_s,
        "b_sent": len(answered), "b_refused": [s for _, at, s in b_sends if at is None],
        "b_measured": len(lat), "b_lost": sum(1 for x, _ in measured if x is None),
        "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": lat[-1] if lat else None,
        "min": lat[0] if lat else None,
        "within": sum(1 for x in lat if x <= TARGET_S),
        "ahead_p50": percentile(ahead, 50), "ahead_max": ahead[-1] if ahead else None,
        "a_window_ratio": ratio(a_window), "all_window_ratio": ratio(all_window),
        "window_s": (window[1] - window[0]) / 1000 if window[0] and window[1] else None,
        "a_drain_ratio": ratio(a_drain), "a_steady_ratio": ratio(steady),
        "a_accepted": len(a_times), "throttled": stats["throttled_130429"], "duplicates": stats["duplicates"],
        "lost": a_sent + len(answered) - stats["unique_bodies"], "max1s": stats["max_window_1s"],
        "target_range": (min(targets), max(targets)) if targets else None,
        "depth_range": (min(depths), max(depths)) if depths else None,
        "drain_s": drain_s, "stopped": why, "problems": problems,
    }


# --- report ----------------------------------------------------------------

COLUMNS = [  # (header, key, width, decimals or None)
    ("scenario", "scenario", -11, None), ("A prio", "a_priority", -6, None), ("A sent", "a_sent", 6, None),
    ("B sent", "b_sent", 6, None), ("B p50 s", "p50", 7, 2), ("B p99 s", "p99", 7, 2), ("B max s", "max", 7, 2),
    ("<=2s", "within", 4, None), ("A ahead p50/max", "ahead", 15, None),
    ("A/cap B-window", "a_window_ratio", 14, 2), ("all/cap B-window", "all_window_ratio", 16, 2),
    ("A/cap drain", "a_drain_ratio", 11, 2), ("A/cap steady", "a_steady_ratio", 12, 2),
    ("130429", "throttled", 6, None), ("dups", "duplicates", 4, None), ("lost", "lost", 4, None),
    ("drain s", "drain_s", 7, 1), ("stopped", "stopped", -13, None),
]


def cell(row, key, width, decimals):
    value = f"{row['ahead_p50']}/{row['ahead_max']}" if key == "ahead" else row[key]
    text = "-" if value is None else f"{value:.{decimals}f}" if decimals is not None else str(value)
    return text.ljust(-width) if width < 0 else text.rjust(width)


def table(rows):
    header = " ".join((h.ljust(-w) if w < 0 else h.rjust(w)) for h, _, w, _ in COLUMNS).rstrip()
    return "\n".join([header] + [" ".join(cell(r, k, w, dec) for _, k, w, dec in COLUMNS).rstrip() for r in rows])


def details(row):
    lines = [f"{row['scenario']}: A's {row['a_sent']} enqueued in {row['a_enqueue_s']:.1f} s; "
             f"B window {row['window_s'] or 0:.1f} s (first B 202 to last B arrival); "
             f"B latency min {fmt(row['min'])} s; B never accepted: {row['b_lost']}; "
             f"most requests at the fake in 1 s: {row['max1s']}"]
    if row["target_range"]:
        lines.append(f"  during the B window: in-flight target {row['target_range'][0]}-{row['target_range'][1]}, "
                     f"queue depth {row['depth_range'][0] if row['depth_range'] else '-'}"
                     f"-{row['depth_range'][1] if row['depth_range'] else '-'} (/health, once a second)")
    if row["b_refused"]:
        lines.append(f"  B sends not answered 202: {row['b_refused']}")
    lines.extend(f"  {p}" for p in row["problems"])
    return lines


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


def verdict(rows):
    by = {r["scenario"]: r for r in rows}
    lines = []
    t = by.get("tenants")
    if t:
        ok_b = t["p99"] is not None and t["p99"] <= TARGET_S and t["b_measured"] == t["b_sent"]
        ok_a = t["a_drain_ratio"] is not None and t["a_drain_ratio"] >= 0.9
        lines.append(f"target (tenants): B p99 {fmt(t['p99'])} s <= {TARGET_S:.0f} s: {'met' if ok_b else 'NOT met'}; "
                     f"A over the drain {fmt(t['a_drain_ratio'])} x cap >= 0.9: {'met' if ok_a else 'NOT met'} "
                     f"(during B's window A alone {fmt(t['a_window_ratio'])}, A+B {fmt(t['all_window_ratio'])})")
    for name in ("single", "single-bulk"):
        if t and name in by:
            lines.append(f"B p99 {fmt(t['p99'])} s with tenants vs {fmt(by[name]['p99'])} s without "
                         f"({name}: A at {by[name]['a_priority']})")
    return lines


NOTES = """\
B p50/p99/max = B's latency: the fake's arrival time of B's request minus when the gateway's 202 reached
  this script (nearest-rank percentiles; p99 of 50 is the largest); <=2s = B sends within 2 s
A ahead = A's requests that reached the fake between a B send's 202 and its arrival (median/most)
A/cap B-window = A's accepts per second at the fake from the first B 202 to the last B arrival, / cap;
  all/cap = the same with B's own accepts (the number's whole throughput, which A and B share)
A/cap drain = (A's accepts - 1) / (last - first A accept) / cap; steady = between A's 5th and 95th percentile
  accept. Herald paces at 0.97 x WHATSAPP_MAX_MPS, so 0.97 is the ceiling of all/cap
130429 = requests the fake refused past its cap; lost = texts answered 2xx and never accepted by the fake
drain s = from A's first batch until every text was accepted (or the run stopped)"""


def binaries_built():
    stamps = []
    for name in ("herald-gateway", os.path.join("examples", "bench_graph_fake")):
        try:
            when = datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(RELEASE, name)))
            stamps.append(f"{os.path.basename(name)} {when:%Y-%m-%d %H:%M:%S}")
        except OSError:
            stamps.append(f"{os.path.basename(name)} missing")
    return ", ".join(stamps)


def header(args, started, load_before):
    return d.run_lines("fairness", started, load_before) + [
        f"binaries: {binaries_built()}",
        f"per scenario: a fresh fake Graph API (cap {args.cap}/s sliding window counting refused requests, "
        f"latency {args.latency_ms} ms) and a fresh embedded gateway (WHATSAPP_MAX_MPS={args.cap}, "
        f"WHATSAPP_PAIR_RATE=0, one deployment number shared by A and B); A: {args.batches} batches of "
        f"{args.batch_size}; B: {args.b_count} single sends, one every {args.b_interval_ms} ms from "
        f"{args.b_delay:g} s after A's last batch was answered",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 batches of 200, 20 B sends, 60 s max wait")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    ap.add_argument("--cap", type=int, default=80, help="the fake's CAP_MPS and WHATSAPP_MAX_MPS (default 80)")
    ap.add_argument("--latency-ms", type=int, default=100, help="the fake's answer latency (default 100)")
    ap.add_argument("--batches", type=int, default=None, help="A's batches (default 10)")
    ap.add_argument("--batch-size", type=int, default=None, help="entries per batch (default 1000; 200 with --quick)")
    ap.add_argument("--a-priority", choices=("high", "normal", "bulk"), default="normal",
                    help="A's entries in the tenants and single scenarios (default normal, as B's sends)")
    ap.add_argument("--b-count", type=int, default=None, help="B's single sends (default 50; 20 with --quick)")
    ap.add_argument("--b-interval-ms", type=int, default=200, help="between B's sends (default 200)")
    ap.add_argument("--b-delay", type=float, default=2.0, help="s after A's last batch before B's first send")
    ap.add_argument("--max-wait", type=int, default=None, help="s per scenario from A's first batch (default 160; 60 quick)")
    ap.add_argument("--stall", type=int, default=20, help="give up after this many seconds without a request")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=None, help="results file (default bench/results/<today>-fairness.txt)")
    args = ap.parse_args()
    args.batches = args.batches or 10
    args.batch_size = args.batch_size or (200 if args.quick else 1000)
    args.b_count = args.b_count or (20 if args.quick else 50)
    args.max_wait = args.max_wait or (60 if args.quick else 160)
    args.keep_logs = bool(os.environ.get("HERALD_BENCH_KEEP"))
    if args.batch_size * args.batches > 10_000 or args.b_count > 10_000:
        sys.exit("recipients are 4-digit counters: at most 10,000 A messages and 10,000 B sends")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        sys.exit(f"--scenarios: unknown {unknown} (expected {', '.join(SCENARIOS)})")
    out = args.out or os.path.join("bench", "results", f"{datetime.date.today().isoformat()}-fairness.txt")
    signal.signal(signal.SIGTERM, d.on_signal)

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "herald-gateway", "--example", "bench_graph_fake"],
                       cwd=ROOT, check=True)

    work = tempfile.mkdtemp(prefix="herald-fairness-bench-")
    rows, remarks = [], []
    started, load_before = datetime.datetime.now(), os.getloadavg()[0]
    try:
        for scenario in scenarios:
            print(f"{scenario}: A {args.batches} x {args.batch_size}, B {args.b_count}", flush=True)
            d.attempt(rows, remarks, scenario, lambda: run_scenario(scenario, args, work),
                      lambda row: table([row]))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        d.clean_up(work)

    d.require_rows(rows, remarks)
    report = "\n".join(header(args, started, load_before) + ["", table(rows), ""]
                       + [line for r in rows for line in details(r)] + [""] + verdict(rows)
                       + ["", NOTES] + remarks)
    d.write_report(report, out)


if __name__ == "__main__":
    main()

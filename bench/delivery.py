#!/usr/bin/env python3
"""Herald's delivery benchmark: how close delivery gets to WHATSAPP_MAX_MPS when the
provider takes time to answer.

    python3 bench/delivery.py [--duration 15] [--scenarios 80@100,80@400]
                              [--delivery-concurrency 16] [--sqs]

Run on demand; it is not part of the test suite. Each scenario (cap, latency):
  1. starts the fake Graph API (examples/bench_graph_fake.rs) answering after
     LATENCY_MS and refusing with Meta's 130429 once more than CAP_MPS requests
     arrived in the last second (sliding window; refused requests count too)
  2. starts the gateway in the embedded default (SQLite queue, in-process worker)
     with WHATSAPP_MAX_MPS = cap and the Graph API base URL pointing at the fake
  3. enqueues cap × duration messages, each with its own text body, from 32
     threads on keep-alive connections (faster than the cap; the rate is printed)
  4. waits until the fake has accepted every message sent with a 202, the time
     limit passes (--max-wait) or nothing reaches the fake for --stall seconds
  5. reads the fake's /stats and the gateway's /health (queue depth, dead letters)

Columns: achieved = (accepted − 1) / (last accept − first accept), using the
arrival times at the fake; bound = min(cap, in-flight ceiling / latency), what
a fixed number of deliveries in flight allows (Little's law); 130429 = throttled
answers; dups = accepted requests whose text was already accepted; lost = sent
with 202 − unique texts accepted at the end (a run stopped by the time limit
counts what was still queued in it: see the queued column); max1s = most requests
that arrived at the fake in any one-second window.

--sqs also runs the cap-80 scenarios through SNS and SQS on a moto server
(gateway in SNS mode → topic → queue with raw delivery → herald-consumer in SQS
poller mode → fake). moto is far too slow for high caps, so only cap 80. Needs
moto_server and boto3 in the repository's .venv (scripts/test.sh installs them).

Every process it starts is stopped by its PID at the end, on error too.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
RELEASE = os.path.join(TARGET, "release")
KEY = "bench-key-0123456789abcdef"
TO = "+14155550123"
DEFAULT_SCENARIOS = "80@100,80@400,80@1000,1000@150"
SQS_CAP = 80
SENDER_THREADS = 32
# With no DELIVERY_CONCURRENCY Herald holds as many deliveries in flight as the
# cap and the observed latency need, up to cap x this many seconds.
AUTO_CEILING_SECONDS = 2.5

PROCS = []  # every process started, stopped by PID in stop_all()


# --- processes -------------------------------------------------------------

def base_env(extra):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    env.update(extra)
    return env


def spawn(cmd, env, cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    proc = subprocess.Popen(cmd, env=base_env(env), cwd=cwd, stdout=stdout, stderr=stderr)
    PROCS.append(proc)
    return proc


def stop(proc, timeout=10):
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    if proc.stdout:
        proc.stdout.close()
    if proc in PROCS:
        PROCS.remove(proc)


def stop_all():
    for proc in list(PROCS):
        stop(proc, timeout=5)


def on_signal(signum, _frame):
    raise SystemExit(f"stopped by signal {signum}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name}: nothing listens on {port}")


def start_fake(cap, latency_ms, args, work):
    return spawn_fake(work, ["--latency-ms", str(latency_ms), "--cap-mps", str(cap),
                             "--window-counts", args.fake_window])


def spawn_fake(work, flags):
    """Starts examples/bench_graph_fake with `flags`; (process, port) once it says where it listens."""
    proc = spawn([os.path.join(RELEASE, "examples", "bench_graph_fake"), "--port", "0"] + flags,
                 {}, work, stdout=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line.startswith("listening on "):
        raise RuntimeError(f"the fake did not say where it listens (got {line!r})")
    return proc, int(line.rsplit(":", 1)[1])


def find_key(value, key):
    """The first value of `key` anywhere in a JSON document."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


def log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def start_gateway(env, work, name):
    """Starts herald-gateway with PORT=0 and reads the bound address from its
    "listening" log line (stderr goes to a file in `work`)."""
    log_path = os.path.join(work, f"{name}.log")
    log = open(log_path, "w")
    # warn, except the startup line that names the address.
    env = dict({"API_KEYS": f"bench:{KEY}"}, **env)  # a caller's own API_KEYS wins
    env = dict(env, HOST="127.0.0.1", PORT="0", LOG_LEVEL="warn,herald::startup=info",
               SHUTDOWN_TIMEOUT_MS="3000")
    try:
        proc = spawn([os.path.join(RELEASE, "herald-gateway")], env, work, stderr=log)
    finally:
        log.close()
    def address(event):
        if find_key(event, "message") == "listening" and find_key(event, "addr"):
            return int(str(find_key(event, "addr")).rsplit(":", 1)[1])
        return None
    return proc, wait_log(proc, log_path, name, address, "its address"), log_path


def wait_log(proc, log_path, name, found, what, timeout=30):
    """Waits until `proc` logs a JSON line for which `found(line)` is not None, and returns that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early with {proc.returncode}:\n{log_tail(log_path)}")
        with open(log_path, errors="replace") as f:
            for line in f:
                try:
                    value = found(json.loads(line))
                except ValueError:
                    continue
                if value is not None:
                    return value
        time.sleep(0.05)
    raise RuntimeError(f"{name} never logged {what}:\n{log_tail(log_path)}")


def delivery_env(fake_port, cap, concurrency):
    env = {"WHATSAPP_ACCESS_TOKEN": "x", "WHATSAPP_PHONE_NUMBER_ID": "123",
           "WHATSAPP_API_BASE_URL": f"http://127.0.0.1:{fake_port}", "WHATSAPP_MAX_MPS": str(cap),
           # Every message goes to one test number: the pair rate is not what is measured.
           "WHATSAPP_PAIR_RATE": "0"}
    if concurrency:
        env["DELIVERY_CONCURRENCY"] = str(concurrency)
    return env


# --- HTTP ------------------------------------------------------------------

def get_json(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
    except urllib.error.HTTPError as e:  # /health answers 503 with a body too
        body = e.read()
    return json.loads(body) if body else None


def enqueue(port, count):
    """POSTs `count` messages ("bench 0" … ) from SENDER_THREADS threads, each on
    its own keep-alive connection. Each carries an Idempotency-Key, so a retry
    after a broken connection cannot enqueue a message twice.
    Returns (accepted with 202, other answers, seconds taken)."""
    lock = threading.Lock()
    next_n = iter(range(count))
    accepted, refused = [0], {}

    def worker():
        conn = None
        while True:
            with lock:
                n = next(next_n, None)
            if n is None:
                break
            body = json.dumps({"to": TO, "message": f"bench {n}"})
            headers = {"content-type": "application/json", "x-api-key": KEY,
                       "idempotency-key": f"bench-{n}"}
            status = None
            for _ in range(3):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    status, open_ = post(conn, "/api/v1/send", body, headers)
                    if not open_:
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                    status = "connection error"
            with lock:
                if status == 202:
                    accepted[0] += 1
                else:
                    refused[status] = refused.get(status, 0) + 1
        if conn is not None:
            conn.close()

    started = time.monotonic()
    run_threads(worker, SENDER_THREADS)
    return accepted[0], refused, time.monotonic() - started


def post(conn, path, body, headers):
    """One POST on a keep-alive connection: (status, whether the connection stays open)."""
    conn.request("POST", path, body, headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.getheader("connection", "").lower() != "close"


def run_threads(target, count):
    """Runs `count` threads of `target` and waits for them all."""
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def wait_delivered(fake_port, sent, max_wait, stall):
    """Polls the fake until every sent text was accepted, `max_wait` seconds pass,
    or no request reaches it for `stall` seconds. Returns (stats, why it stopped)."""
    deadline = time.monotonic() + max_wait
    last_requests, last_change = -1, time.monotonic()
    while True:
        stats = get_json(fake_port, "/stats")
        now = time.monotonic()
        if stats["unique_bodies"] >= sent:
            return stats, "all delivered"
        if stats["requests"] != last_requests:
            last_requests, last_change = stats["requests"], now
        if now - last_change > stall:
            return stats, f"stalled {stall}s"
        if now > deadline:
            return stats, f"time limit {max_wait}s"
        time.sleep(0.25)


def settle(fake_port, latency_ms):
    """Lets answers in flight land and the gateway's cached /health counters
    (1 s) catch up; a late duplicate would show here too. Returns fresh stats."""
    time.sleep(1.5 + 2 * latency_ms / 1000)
    return get_json(fake_port, "/stats")


# --- scenarios -------------------------------------------------------------

def result_row(mode, cap, latency_ms, concurrency, sent, refused, enqueue_s, stats, why, queued, dead, drain_s):
    accepted = stats["accepted"]
    first, last = stats["first_accept_ms"], stats["last_accept_ms"]
    achieved = (accepted - 1) / ((last - first) / 1000) if accepted > 1 and last > first else float("nan")
    ceiling = concurrency or cap * AUTO_CEILING_SECONDS
    return {
        "mode": mode, "cap": cap, "latency_ms": latency_ms, "concurrency": concurrency or "auto",
        "sent": sent, "refused": refused, "enqueue_rate": sent / enqueue_s if enqueue_s else float("nan"),
        "requests": stats["requests"], "accepted": accepted, "unique": stats["unique_bodies"],
        "achieved": achieved, "ratio": achieved / cap,
        "bound": min(cap, ceiling / (latency_ms / 1000)) if latency_ms else cap,
        "throttled": stats["throttled_130429"], "duplicates": stats["duplicates"],
        "lost": sent - stats["unique_bodies"], "queued": queued, "dead": dead,
        "max_window": stats["max_window_1s"], "peak_accepted": stats["max_accepted_window_1s"],
        "drain_s": drain_s, "stopped": why,
    }


def run_embedded(cap, latency_ms, args, work):
    data_dir = tempfile.mkdtemp(prefix="data-", dir=work)
    fake, fake_port = start_fake(cap, latency_ms, args, work)
    gateway = None
    try:
        env = dict(delivery_env(fake_port, cap, args.delivery_concurrency), HERALD_DATA_DIR=data_dir)
        gateway, port, log_path = start_gateway(env, work, f"gateway-{cap}-{latency_ms}")
        count = cap * args.duration
        t0 = time.monotonic()
        sent, refused, enqueue_s = enqueue(port, count)
        stats, why = wait_delivered(fake_port, sent, args.max_wait, args.stall)
        drain_s = time.monotonic() - t0
        stats = settle(fake_port, latency_ms)
        health = get_json(port, "/health") or {}
        queued, dead = find_key(health, "depth"), find_key(health, "deadLetters")
        if why != "all delivered":
            print(f"  gateway log tail:\n{log_tail(log_path, 5)}", end="")
        return result_row("embedded", cap, latency_ms, args.delivery_concurrency, sent, refused, enqueue_s,
                          stats, why, queued, dead, drain_s)
    finally:
        if gateway:
            stop(gateway)
        stop(fake)
        shutil.rmtree(data_dir, ignore_errors=True)


# The venv's Python does the AWS side with boto3; this script stays standard-library.
AWS_HELPER = r"""
import json, sys, uuid, boto3
endpoint, action = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="bench", aws_secret_access_key="bench")
sqs, sns = boto3.client("sqs", **kw), boto3.client("sns", **kw)
def arn(url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
if action == "create":
    name = "herald-bench-" + uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=name)["TopicArn"]
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    redrive = json.dumps({"deadLetterTargetArn": arn(dlq), "maxReceiveCount": "10"})
    queue = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30",
                                                         "RedrivePolicy": redrive})["QueueUrl"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn(queue),
                  Attributes={"RawMessageDelivery": "true"})
    print(json.dumps({"topic": topic, "queue": queue, "dlq": dlq}))
else:
    def depth(url):
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
    print(json.dumps({"queued": depth(sys.argv[3]), "dead": depth(sys.argv[4])}))
"""


def aws(venv_python, moto_port, *argv):
    out = subprocess.run([venv_python, "-c", AWS_HELPER, f"http://127.0.0.1:{moto_port}", *argv],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"boto3 helper failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def find_venv():
    """The repository's .venv, or the main worktree's when this is another worktree."""
    candidates = [os.path.join(ROOT, ".venv")]
    try:
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        candidates.append(os.path.join(os.path.dirname(common), ".venv"))
    except (OSError, subprocess.CalledProcessError):
        pass
    for venv in candidates:
        if os.access(os.path.join(venv, "bin", "moto_server"), os.X_OK):
            return venv
    return None


def sqs_prerequisites(venv):
    """Why --sqs cannot run, or None."""
    if venv is None:
        return "no .venv with moto_server (run scripts/test.sh once to install it)"
    check = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import boto3"], capture_output=True)
    if check.returncode != 0:
        return f"boto3 is not installed in {venv}"
    return None


def start_moto(venv, work):
    port = free_port()
    log = open(os.path.join(work, "moto.log"), "w")
    try:
        proc = spawn([os.path.join(venv, "bin", "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                     {}, work, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    wait_port(port, proc, "moto_server")
    return proc, port


def run_sqs(cap, latency_ms, args, work, venv, moto_port):
    python = os.path.join(venv, "bin", "python")
    names = aws(python, moto_port, "create")
    aws_env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    fake, fake_port = start_fake(cap, latency_ms, args, work)
    gateway = consumer = None
    try:
        gateway, port, _ = start_gateway(dict(aws_env, SNS_TOPIC_ARN=names["topic"]), work,
                                         f"gateway-sns-{cap}-{latency_ms}")
        consumer_log = os.path.join(work, f"consumer-{cap}-{latency_ms}.log")

        def start_consumer():
            log = open(consumer_log, "w")
            try:
                return spawn([os.path.join(RELEASE, "herald-consumer")],
                             dict(aws_env, **delivery_env(fake_port, cap, args.delivery_concurrency),
                                  SQS_QUEUE_URL=names["queue"], LOG_LEVEL="warn"),
                             work, stderr=log)
            finally:
                log.close()

        count = cap * args.duration
        if not args.sqs_prefill:
            consumer = start_consumer()
        t0 = time.monotonic()
        sent, refused, enqueue_s = enqueue(port, count)
        if args.sqs_prefill:
            # Wait for moto's SNS -> SQS fan-out, then measure the poller alone.
            deadline = time.monotonic() + 120
            while aws(python, moto_port, "count", names["queue"], names["dlq"])["queued"] < sent:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto never fanned every message out to the queue")
                time.sleep(0.5)
            consumer = start_consumer()
            t0 = time.monotonic()
        stats, why = wait_delivered(fake_port, sent, args.max_wait, args.stall)
        drain_s = time.monotonic() - t0
        stats = settle(fake_port, latency_ms)
        if consumer.poll() is not None:
            print(f"  herald-consumer exited with {consumer.returncode}:\n{log_tail(consumer_log, 5)}", end="")
        elif why != "all delivered":
            print(f"  consumer log tail:\n{log_tail(consumer_log, 5)}", end="")
        depth = aws(python, moto_port, "count", names["queue"], names["dlq"])
        return result_row("sqs (moto)", cap, latency_ms, args.delivery_concurrency, sent, refused, enqueue_s,
                          stats, why, depth["queued"], depth["dead"], drain_s)
    finally:
        for proc in (consumer, gateway):
            if proc:
                stop(proc)
        stop(fake)


# --- report ----------------------------------------------------------------

# (header, key, width, decimals or None for text/integers)
COLUMNS = [
    ("mode", "mode", -10, None), ("cap", "cap", 5, None), ("lat ms", "latency_ms", 6, None),
    ("conc", "concurrency", 4, None), ("sent", "sent", 6, None), ("enq/s", "enqueue_rate", 6, 0),
    ("achieved", "achieved", 8, 1), ("/cap", "ratio", 5, 2), ("bound", "bound", 6, 1),
    ("130429", "throttled", 6, None), ("dups", "duplicates", 5, None), ("lost", "lost", 5, None),
    ("queued", "queued", 6, None), ("dead", "dead", 5, None), ("max1s", "max_window", 5, None),
    ("peak1s", "peak_accepted", 6, None),
    ("drain s", "drain_s", 7, 1), ("stopped", "stopped", -14, None),
]


def cell(value, width, decimals):
    text = "-" if value is None else f"{value:.{decimals}f}" if decimals is not None else str(value)
    return text.ljust(-width) if width < 0 else text.rjust(width)


def table(rows):
    lines = [" ".join(cell(header, width, None) for header, _, width, _ in COLUMNS).rstrip()]
    for row in rows:
        lines.append(" ".join(cell(row[key], width, dec) for _, key, width, dec in COLUMNS).rstrip())
        extra = []
        if row["refused"]:
            extra.append(f"not accepted by the gateway: {row['refused']}")
        if row["enqueue_rate"] < row["cap"]:
            why = " (moto's SNS -> SQS fan-out is slow)" if row["mode"].startswith("sqs") else ""
            extra.append(f"enqueueing was slower than the cap{why}: the achieved rate is bounded by it")
        lines.extend(f"    {e}" for e in extra)
    return "\n".join(lines)


NOTES = """\
achieved = (accepted - 1) / (last accept - first accept) at the fake, msg/s; /cap = achieved / cap
bound    = min(cap, in-flight ceiling / latency): the most the deliveries in flight can do
130429   = answers refused by the fake: more than cap requests in its sliding 1-s window (what it counts: see above)
dups     = accepted requests whose text was already accepted; lost = sent with 202 - unique texts accepted
queued   = still held at the end (embedded queue depth, or SQS visible + in flight); dead = dead letters
max1s    = most requests at the fake in any 1-s window (compare with cap); peak1s = most accepted in any 1-s window
drain s  = from the first enqueue until every text was accepted (or the run stopped)
sqs mode = gateway (SNS) -> moto SNS -> SQS -> herald-consumer poller; cap 80 only: moto is too slow for high caps"""


def results_path(name="delivery"):
    """bench/results/<today>-<name>.txt, numbered when that file exists."""
    base = os.path.join(ROOT, "bench", "results", f"{datetime.date.today().isoformat()}-{name}")
    path, n = base + ".txt", 2
    while os.path.exists(path):
        path, n = f"{base}-{n}.txt", n + 1
    return path


def git_head():
    """The commit measured, and whether the working tree differed from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def parse_scenarios(text):
    out = []
    for item in text.split(","):
        cap, _, latency = item.strip().partition("@")
        if not cap.isdigit() or not latency.isdigit():
            sys.exit(f"--scenarios: {item!r} is not CAP@LATENCY_MS (e.g. 80@400)")
        out.append((int(cap), int(latency)))
    return out


def attempt(rows, remarks, label, run, show):
    """Runs one scenario (`run()`) into `rows`, printing `show(row)`; a scenario that fails goes to
    `remarks` and does not end the run."""
    try:
        rows.append(run())
        print(show(rows[-1]), flush=True)
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        remarks.append(f"{label}: failed: {e}")
        print(remarks[-1], flush=True)


def clean_up(work):
    """Stops every process started, by PID, and removes `work` unless HERALD_BENCH_KEEP is set."""
    stop_all()
    if os.environ.get("HERALD_BENCH_KEEP"):
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def require_rows(rows, remarks):
    """Ends the bench with the remarks when no scenario finished."""
    if not rows:
        sys.exit("no scenario finished" + "".join(f"\n{r}" for r in remarks))


def run_lines(title, started, load_before):
    """The report's first lines: what ran, where, on which commit, and how busy the machine was."""
    return [
        f"Herald {title} benchmark, {started:%Y-%m-%d %H:%M}, commit {git_head()}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, {platform.system()} {platform.release()}, load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (other work on the machine skews the results)",
        f"command: {' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])}",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=15, help="seconds of traffic at the cap per scenario")
    ap.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help=f"CAP@LATENCY_MS,... (default {DEFAULT_SCENARIOS})")
    ap.add_argument("--delivery-concurrency", type=int, default=None,
                    help="DELIVERY_CONCURRENCY for the gateway/consumer (default: unset, Herald's automatic in-flight)")
    ap.add_argument("--sqs-prefill", action="store_true",
                    help="with --sqs: fill the queue first, then start the poller (measures the poller "
                         "without moto's slow SNS fan-out competing for the emulator)")
    ap.add_argument("--max-wait", type=int, default=None,
                    help="longest wait for delivery per scenario, s (default max(120, 12 × duration))")
    ap.add_argument("--stall", type=int, default=30, help="give up after this many seconds without a request")
    ap.add_argument("--fake-window", choices=("all", "accepted"), default="all",
                    help="what the fake's 1-s window counts: every request (default) or accepted ones only")
    ap.add_argument("--sqs", action="store_true", help="also run the cap-80 scenarios through moto SNS/SQS")
    ap.add_argument("--no-embedded", action="store_true", help="skip the embedded scenarios (with --sqs)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if args.max_wait is None:
        args.max_wait = max(120, 12 * args.duration)
    scenarios = parse_scenarios(args.scenarios)
    signal.signal(signal.SIGTERM, on_signal)

    venv, sqs_skipped = None, None
    if args.sqs:
        venv = find_venv()
        sqs_skipped = sqs_prerequisites(venv)
        if sqs_skipped:
            print(f"--sqs skipped: {sqs_skipped}")
    run_sqs_mode = args.sqs and not sqs_skipped

    if not args.no_build:
        cmd = ["cargo", "build", "--release", "--locked", "--bin", "herald-gateway", "--example", "bench_graph_fake"]
        if run_sqs_mode:
            cmd += ["--bin", "herald-consumer"]
        subprocess.run(cmd, cwd=ROOT, check=True)

    work = tempfile.mkdtemp(prefix="herald-delivery-bench-")
    rows, remarks = [], []
    started, load_before = datetime.datetime.now(), os.getloadavg()[0]

    def scenario(label, run, *run_args):
        print(f"{label}, {run_args[0] * args.duration} messages", flush=True)
        attempt(rows, remarks, label, lambda: run(*run_args), lambda row: table([row]))

    try:
        if not args.no_embedded:
            for cap, latency in scenarios:
                scenario(f"embedded: cap {cap}/s, latency {latency} ms", run_embedded, cap, latency, args, work)
        if run_sqs_mode:
            sqs_scenarios = [(c, l) for c, l in scenarios if c == SQS_CAP]
            high = sorted({f"{c}@{l}" for c, l in scenarios if c != SQS_CAP})
            if high:
                remarks.append(f"sqs (moto): not run for {', '.join(high)}: only cap {SQS_CAP}, moto is too slow for high caps")
                print(remarks[-1], flush=True)
            if not sqs_scenarios:
                remarks.append(f"sqs (moto): no scenario with cap {SQS_CAP} selected; nothing ran through SQS")
                print(remarks[-1], flush=True)
            else:
                moto, moto_port = start_moto(venv, work)
                try:
                    for cap, latency in sqs_scenarios:
                        scenario(f"sqs (moto): cap {cap}/s, latency {latency} ms", run_sqs,
                                cap, latency, args, work, venv, moto_port)
                finally:
                    stop(moto)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        clean_up(work)

    require_rows(rows, remarks)
    report = "\n".join(run_lines("delivery", started, load_before) + [
        f"duration {args.duration} s of traffic per scenario; DELIVERY_CONCURRENCY "
        f"{args.delivery_concurrency or 'unset (automatic)'}; "
        f"the fake's window counts {'every request' if args.fake_window == 'all' else 'accepted requests'}",
        "",
        table(rows),
        "",
        NOTES,
    ] + ([f"--sqs skipped: {sqs_skipped}"] if sqs_skipped else []) + remarks)
    write_report(report, results_path())


def write_report(report, path):
    """Prints a bench's report and writes it to `path` (relative to the repository)."""
    print("\n" + report)
    path = path if os.path.isabs(path) else os.path.join(ROOT, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(report + "\n")
    print(f"\nwritten to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()

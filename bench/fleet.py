#!/usr/bin/env python3
"""Herald's fleet benchmark: several gateways and SQS pollers on one machine
sharing one number's limits through DynamoDB (STATUS_TABLE).

    python3 bench/fleet.py [--gateways 2] [--consumers 1,3,6] [--cap-mps 20]
                           [--latency-ms 50] [--messages N] [--max-wait 150]

Run on demand; it is not part of the test suite. One moto_server (SNS, SQS,
DynamoDB, from the repository's .venv) and one fake Graph API
(examples/bench_graph_fake.rs: 130429 past --cap-mps requests in any sliding
second, refused ones included; 131056 for a recipient whose last accepted
request arrived less than --pair-window-ms ago) serve every run. For each K in
--consumers:
  1. a fresh SNS topic, SQS queue (raw delivery, dead-letter queue after 10
     receives) and DynamoDB table (pk/sk strings, PAY_PER_REQUEST, TTL on
     expiresAt), made with boto3 by the venv's Python; the fake is reset
  2. G herald-gateway in SNS mode (SNS_TOPIC_ARN, STATUS_TABLE) and K
     herald-consumer SQS pollers, each given the number's whole limits
     (WHATSAPP_MAX_MPS = cap, WHATSAPP_PAIR_RATE = 1, STATUS_TABLE, METRICS_PORT):
     the fleet, not each process, has to keep them
  3. N messages (default cap x 20 s), each with its own text, round-robin over
     the gateways from 32 threads; every recipient is distinct except 12
     messages to 3 people (4 each, spread evenly through the run), so the pair
     rate binds. Meanwhile 10 keyed requests (Idempotency-Key) go to gateway 0,
     and each is retried with the same key and body on gateway 1
  4. waits until the fake has accepted every text sent with a 2xx, --max-wait
     passes or nothing reaches the fake for --stall seconds; then scrapes every
     process's /metrics and reads the queue depth

Columns: see NOTES below. moto is slow: the enqueue rate, the queue's backlog
and the CPU each process used show whether moto or the fleet bound a run.
Logs (gateways warn, consumers --consumer-log-level, default info) go to files
in a temporary work dir; HERALD_BENCH_KEEP=1 keeps it. Every process it starts
is stopped by its PID at the end, on error and Ctrl-C too. Everything listens
on 127.0.0.1.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

sys.dont_write_bytecode = True  # no bench/__pycache__ from the import below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import delivery as d  # noqa: E402  (bench/delivery.py: process, moto and venv helpers)

ROOT, RELEASE, KEY = d.ROOT, d.RELEASE, d.KEY
SENDER_THREADS = 32
IDLE_RECONNECT_S = 5.0
KEYED = 10
REPEAT_MESSAGES, REPEAT_PEOPLE = 12, 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes -------------------------------------------------------------
# Every process goes into d.PROCS (delivery.py's list) and is stopped by PID
# with d.stop / d.stop_all.

def start_fake(args, work):
    return d.spawn_fake(work, ["--latency-ms", str(args.latency_ms), "--cap-mps", str(args.cap_mps),
                               "--pair-window-ms", str(args.pair_window_ms)])


def wait_log(proc, log_path, name, message, timeout=30):
    """Waits until `proc` logs a JSON line whose message is `message`."""
    d.wait_log(proc, log_path, name, lambda event: True if d.find_key(event, "message") == message else None,
               repr(message), timeout)


def cpu_seconds(proc):
    """User + system CPU seconds `proc` has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


# The venv's Python does the AWS side with boto3 (this script stays
# standard-library): one helper process for the whole run, one JSON command a
# line on stdin, one JSON answer a line on stdout.
AWS_HELPER = r"""
import json, sys, uuid, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="bench", aws_secret_access_key="bench")
sqs, sns, ddb = boto3.client("sqs", **kw), boto3.client("sns", **kw), boto3.client("dynamodb", **kw)
def arn(url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
def create(_):
    name = "herald-fleet-" + uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=name)["TopicArn"]
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    redrive = json.dumps({"deadLetterTargetArn": arn(dlq), "maxReceiveCount": "10"})
    queue = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30",
                                                         "RedrivePolicy": redrive})["QueueUrl"]
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn(queue),
                        Attributes={"RawMessageDelivery": "true"})["SubscriptionArn"]
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True,
                                                                     "AttributeName": "expiresAt"})
    return {"topic": topic, "queue": queue, "dlq": dlq, "table": name, "subscription": sub}
def depth(c):
    out = {}
    for key in ("queue", "dlq"):
        a = sqs.get_queue_attributes(QueueUrl=c[key], AttributeNames=["All"])["Attributes"]
        out[key] = {"visible": int(a["ApproximateNumberOfMessages"]),
                    "in_flight": int(a["ApproximateNumberOfMessagesNotVisible"]),
                    "delayed": int(a.get("ApproximateNumberOfMessagesDelayed", 0))}
    return out
def delete(c):
    sns.unsubscribe(SubscriptionArn=c["subscription"])
    sns.delete_topic(TopicArn=c["topic"])
    sqs.delete_queue(QueueUrl=c["queue"])
    sqs.delete_queue(QueueUrl=c["dlq"])
    ddb.delete_table(TableName=c["table"])
    return {}
actions = {"create": create, "depth": depth, "delete": delete}
for line in sys.stdin:
    command = json.loads(line)
    try:
        answer = {"ok": actions[command["action"]](command)}
    except Exception as e:  # reported to the caller, which decides
        answer = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


class Aws:
    """The boto3 helper process; calls are serialised and time-bounded."""

    def __init__(self, venv, moto_port, work):
        self.lock = threading.Lock()
        log = open(os.path.join(work, "aws-helper.log"), "w")
        try:
            self.proc = subprocess.Popen(
                [os.path.join(venv, "bin", "python"), "-u", "-c", AWS_HELPER, f"http://127.0.0.1:{moto_port}"],
                env=d.base_env({}), cwd=work, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        finally:
            log.close()
        d.PROCS.append(self.proc)

    def __call__(self, action, timeout=60, **fields):
        with self.lock:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the boto3 helper exited with {self.proc.returncode}")
            self.proc.stdin.write((json.dumps(dict(fields, action=action)) + "\n").encode())
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise RuntimeError(f"boto3 helper: no answer to {action} in {timeout} s")
            answer = json.loads(self.proc.stdout.readline() or b'{"error": "the helper closed its output"}')
        if "error" in answer:
            raise RuntimeError(f"boto3 helper, {action}: {answer['error']}")
        return answer["ok"]

    def close(self):
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        d.stop(self.proc, timeout=5)


# --- HTTP ------------------------------------------------------------------

def post(port, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def fleet_writes(port):
    """Sum of herald_fleet_writes_total at `port`'s /metrics, and its series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    series = {}
    for line in text.splitlines():
        m = re.match(r'herald_fleet_writes_total(\{[^}]*\})?\s+([0-9.eE+-]+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
            key = (labels.get("item", "?"), labels.get("outcome", "?"))
            series[key] = series.get(key, 0) + float(m.group(2))
    return sum(series.values()), series


def send_all(jobs, ports):
    """POSTs every (n, to, text) in `jobs` to gateway n % len(ports), from
    SENDER_THREADS threads with a keep-alive connection per gateway (made
    anew after IDLE_RECONNECT_S unused: the gateway closes connections idle
    for HEADER_READ_TIMEOUT_MS, 10 s, and a request written as it closes one
    fails). No Idempotency-Key (it would cost a claim in DynamoDB per
    message) and so no retry: a connection error counts as not sent. Returns (texts answered 2xx,
    other answers by status, first and last 2xx as monotonic times)."""
    lock = threading.Lock()
    todo = iter(jobs)
    sent, refused, times = [], Counter(), []

    def worker():
        conns, used = {}, {}
        while True:
            with lock:
                job = next(todo, None)
            if job is None:
                break
            n, to, text = job
            port = ports[n % len(ports)]
            body = json.dumps({"to": to, "message": text})
            headers = {"content-type": "application/json", "x-api-key": KEY}
            if port in conns and time.monotonic() - used[port] > IDLE_RECONNECT_S:
                conns.pop(port).close()
            try:
                conn = conns.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conns[port] = conn
                status, open_ = d.post(conn, "/api/v1/send", body, headers)
                if not open_:
                    conn.close()
                    conns.pop(port, None)
            except (OSError, http.client.HTTPException) as e:
                conns.pop(port, None)
                status = f"connection error ({type(e).__name__})"
            used[port] = time.monotonic()
            with lock:
                if isinstance(status, int) and 200 <= status < 300:
                    sent.append(text)
                    times.append(time.monotonic())
                else:
                    refused[status] += 1
        for conn in conns.values():
            conn.close()

    d.run_threads(worker, SENDER_THREADS)
    return sent, refused, (min(times), max(times)) if times else (None, None)


def keyed_send(port, key, to, text, attempts=5):
    """One keyed POST (retried after a 409 in flight, as its Retry-After says).
    Returns (status, messageId or None)."""
    body = json.dumps({"to": to, "message": text})
    headers = {"content-type": "application/json", "x-api-key": KEY, "idempotency-key": key}
    status, message_id = None, None
    for _ in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/api/v1/send", body, headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
            try:
                message_id = json.loads(raw).get("messageId")
            except (ValueError, AttributeError):
                message_id = None
            if status != 409:
                break
            time.sleep(min(5.0, float(resp.getheader("retry-after") or 1)))
        except (OSError, http.client.HTTPException) as e:
            status = f"connection error ({type(e).__name__})"
        finally:
            conn.close()
    return status, message_id


def keyed_pairs(ports, k_label):
    """KEYED keys: each sent to gateway 0, then retried with the same key and
    body on gateway 1. Returns [(key, text, first (status, id), retry (status, id))]."""
    out = []
    for i in range(KEYED):
        key = f"fleet-{k_label}-key-{i}"
        to, text = f"+1415{4000000 + i:07d}", f"fleet {k_label} keyed {i}"
        first = keyed_send(ports[0], key, to, text)
        retry = keyed_send(ports[1 % len(ports)], key, to, text)
        out.append((key, text, first, retry))
    return out


# --- one run ---------------------------------------------------------------

def bulk_jobs(count, label):
    """(n, to, text) for the bulk: distinct recipients except REPEAT_MESSAGES
    messages to REPEAT_PEOPLE people, spread evenly through the sequence."""
    repeats = min(REPEAT_MESSAGES, count)
    slots = {int((i + 0.5) * count / repeats): i % REPEAT_PEOPLE for i in range(repeats)} if repeats else {}
    jobs = []
    for n in range(count):
        to = f"+1415{3000000 + slots[n]:07d}" if n in slots else f"+1415{2000000 + n:07d}"
        jobs.append((n, to, f"fleet {label} {n}"))
    return jobs


def wait_delivered(fake_port, expected, args):
    deadline = time.monotonic() + args.max_wait
    last_requests, last_change = -1, time.monotonic()
    while True:
        stats = d.get_json(fake_port, "/stats")
        now = time.monotonic()
        if stats["unique_bodies"] >= expected:
            return stats, "all delivered"
        if stats["requests"] != last_requests:
            last_requests, last_change = stats["requests"], now
        if now - last_change > args.stall:
            return stats, f"stalled {args.stall}s"
        if now > deadline:
            return stats, f"time limit {args.max_wait}s"
        time.sleep(0.25)


def steady_rate(accept_ms):
    """Accepted per second between the 5th and 95th percentile of accept
    times: the busy middle of a run, without the start-up ramp or the tail of
    pair-rate holds. None with fewer than 20 accepts."""
    times = sorted(accept_ms)
    if len(times) < 20:
        return None
    a, b = int(0.05 * len(times)), int(0.95 * len(times)) - 1
    return (b - a) / ((times[b] - times[a]) / 1000) if times[b] > times[a] else None


class Sampler(threading.Thread):
    """Once a second: the queue's depth (visible, in flight, delayed) and the
    fake's accepted count, for where the backlog sat."""

    def __init__(self, aws, names, fake_port):
        super().__init__(daemon=True)
        self.aws, self.names, self.fake_port = aws, names, fake_port
        self.samples, self.stopped = [], threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.stopped.is_set():
            try:
                depth = self.aws("depth", timeout=20, queue=self.names["queue"], dlq=self.names["dlq"])
                accepted = d.get_json(self.fake_port, "/stats")["accepted"]
                q = depth["queue"]
                self.samples.append((time.monotonic() - self.t0, q["visible"], q["in_flight"] + q["delayed"],
                                     accepted))
            except (RuntimeError, OSError, ValueError, KeyError):
                pass
            self.stopped.wait(1.0)


def spacing(accepts, cap):
    """From every request the fake answered (accepted, 130429, 131056): the
    shortest time `cap` + 1 consecutive requests took (under 1000 ms means the
    sliding window saw more than the cap) and how many such runs were under
    1000 ms."""
    times = sorted([t for t, _ in accepts["accepts"]] + [t for t, _ in accepts.get("throttled", [])]
                   + [t for t, _, _ in accepts["pair_limited"]])
    spans = [times[i] - times[i - cap] for i in range(cap, len(times))]
    return (min(spans) if spans else None), sum(1 for x in spans if x < 1000)


def log_summary(paths, limit=6):
    """WARN and ERROR lines of the given JSON logs, counted by message (with
    the first line of each kind as an example), and the DEBUG "not sent"
    holds (pair rate, pacing deadline, circuit) counted by reason."""
    counts, example = Counter(), {}
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    level = str(d.find_key(event, "level") or "").upper()
                    message = str(d.find_key(event, "message"))
                    if level == "DEBUG" and message.startswith("not sent"):
                        kind = ("held", str(d.find_key(event, "error.message")))
                    elif level in ("WARN", "ERROR"):
                        kind = (level, message)
                    else:
                        continue
                    counts[kind] += 1
                    example.setdefault(kind, (os.path.basename(path), line.strip()))
        except OSError:
            continue
    return [(level, msg, n, example[(level, msg)]) for (level, msg), n in counts.most_common(limit)]


def run_fleet(k, args, work, aws, moto, fake, fake_port):
    label = f"k{k}"
    names = aws("create")
    post(fake_port, "/reset")
    aws_env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto[1]}", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    gateways, consumers, logs, sampler = [], [], [], None
    try:
        for g in range(args.gateways):
            proc, port, log = d.start_gateway(dict(aws_env, SNS_TOPIC_ARN=names["topic"], STATUS_TABLE=names["table"]),
                                              work, f"{label}-gateway-{g}")
            gateways.append((proc, port))
            logs.append(log)
        consumer_env = dict(
            aws_env, WHATSAPP_ACCESS_TOKEN="x", WHATSAPP_PHONE_NUMBER_ID="123",
            WHATSAPP_API_BASE_URL=f"http://127.0.0.1:{fake_port}", WHATSAPP_MAX_MPS=str(args.cap_mps),
            WHATSAPP_PAIR_RATE="1", SQS_QUEUE_URL=names["queue"], STATUS_TABLE=names["table"],
            SNS_TOPIC_ARN=names["topic"], HOST="127.0.0.1", LOG_LEVEL=args.consumer_log_level)
        consumer_env.update(args.consumer_env)
        def start_consumers():
            for c in range(k):
                log_path = os.path.join(work, f"{label}-consumer-{c}.log")
                metrics_port = d.free_port()
                log = open(log_path, "w")
                try:
                    proc = d.spawn([os.path.join(RELEASE, "herald-consumer")],
                                   dict(consumer_env, METRICS_PORT=str(metrics_port)), work, stderr=log)
                finally:
                    log.close()
                consumers.append((proc, metrics_port, log_path))
                logs.append(log_path)
            for c, (proc, metrics_port, log_path) in enumerate(consumers):
                d.wait_port(metrics_port, proc, f"consumer {c}")
                if args.consumer_log_level.split(",")[0] in ("info", "debug", "trace"):
                    wait_log(proc, log_path, f"consumer {c}", "polling SQS")

        ports = [port for _, port in gateways]
        jobs = bulk_jobs(args.messages, label)
        keyed = []
        if args.enqueue_first:
            # The queue is filled before any consumer runs: moto serves the
            # consumers alone, and the drain measures the fleet, not moto's
            # publish path (one Python process for SNS, SQS and DynamoDB).
            keyed.extend(keyed_pairs(ports, label))
            t_enq = time.monotonic()
            sent, refused, (first_2xx, last_2xx) = send_all(jobs, ports)
            enqueue_s = (last_2xx or t_enq) - t_enq
            start_consumers()
        else:
            start_consumers()
        procs = {"moto": [moto[0]], "gateways": [p for p, _ in gateways],
                 "consumers": [p for p, _, _ in consumers], "fake": [fake], "boto3 helper": [aws.proc]}
        cpu_before = {role: sum(cpu_seconds(p) for p in ps) for role, ps in procs.items()}
        sampler = Sampler(aws, names, fake_port)
        sampler.start()

        t0 = time.monotonic()
        if not args.enqueue_first:
            keyed_thread = threading.Thread(target=lambda: keyed.extend(keyed_pairs(ports, label)), daemon=True)
            keyed_thread.start()
            sent, refused, (first_2xx, last_2xx) = send_all(jobs, ports)
            keyed_thread.join(timeout=120)
            enqueue_s = (last_2xx or t0) - t0
        expected = set(sent) | {text for _, text, first, retry in keyed
                                if any(isinstance(s, int) and 200 <= s < 300 for s, _ in (first, retry))}
        stats, why = wait_delivered(fake_port, len(expected), args)
        drain_s = time.monotonic() - t0
        time.sleep(1.5 + 2 * args.latency_ms / 1000)  # answers in flight land; a late duplicate shows
        sampler.stopped.set()
        stats = d.get_json(fake_port, "/stats")
        accepts = d.get_json(fake_port, "/accepts")
        with open(os.path.join(work, f"{label}-fake.json"), "w") as f:
            json.dump({"stats": stats, "accepts": accepts, "sqs_samples": sampler.samples,
                       "enqueue_s": enqueue_s}, f)
        cpu = {role: sum(cpu_seconds(p) for p in ps) - cpu_before[role] for role, ps in procs.items()}

        writes, series = 0.0, Counter()
        scrape_failed = []
        for name, port in [(f"gateway {g}", p) for g, (_, p) in enumerate(gateways)] + \
                          [(f"consumer {c}", p) for c, (_, p, _) in enumerate(consumers)]:
            try:
                total, s = fleet_writes(port)
                writes += total
                series.update(s)
            except (OSError, ValueError) as e:
                scrape_failed.append(f"{name}: {e}")
        depth = aws("depth", queue=names["queue"], dlq=names["dlq"])
        sampler.join(timeout=25)
        exited = [f"consumer {c} exited with {p.returncode}" for c, (p, _, _) in enumerate(consumers)
                  if p.poll() is not None]
        exited += [f"gateway {g} exited with {p.returncode}" for g, (p, _) in enumerate(gateways)
                   if p.poll() is not None]
    finally:
        if sampler:
            sampler.stopped.set()
        for proc, _, _ in consumers:
            d.stop(proc)
        for proc, _ in gateways:
            d.stop(proc)
    try:
        aws("delete", **names)
    except RuntimeError:
        pass

    accepted = stats["accepted"]
    first, last = stats["first_accept_ms"], stats["last_accept_ms"]
    achieved = (accepted - 1) / ((last - first) / 1000) if accepted > 1 and last and first and last > first \
        else float("nan")
    steady = steady_rate([t for t, _ in accepts["accepts"]])
    tightest, over_cap = spacing(accepts, args.cap_mps)
    kept = sum(1 for _, _, (s1, id1), (s2, id2) in keyed
               if isinstance(s1, int) and 200 <= s1 < 300 and isinstance(s2, int) and 200 <= s2 < 300
               and id1 and id1 == id2)
    samples = sampler.samples
    after_enqueue = [s for s in samples if s[0] >= enqueue_s]
    row = {
        "k": k, "g": args.gateways, "cap": args.cap_mps, "sent": len(sent), "refused": dict(refused),
        "enqueue_rate": len(sent) / enqueue_s if enqueue_s > 0 else float("nan"), "enqueue_s": enqueue_s,
        "accepted": accepted, "unique": stats["unique_bodies"], "expected": len(expected),
        "achieved": achieved, "ratio": achieved / args.cap_mps,
        "steady_ratio": steady / args.cap_mps if steady else None,
        "max_window": stats["max_window_1s"], "peak_accepted": stats["max_accepted_window_1s"],
        "throttled": stats["throttled_130429"], "pair_limited": stats["pair_limited_131056"],
        "duplicates": stats["duplicates"], "lost": len(expected) - stats["unique_bodies"],
        "keyed": f"{kept}/{KEYED}", "keyed_detail": keyed,
        "writes": writes, "writes_per_msg": writes / accepted if accepted else float("nan"),
        "series": dict(series), "scrape_failed": scrape_failed,
        "queued": depth["queue"]["visible"] + depth["queue"]["in_flight"] + depth["queue"]["delayed"],
        "dead": depth["dlq"]["visible"] + depth["dlq"]["in_flight"] + depth["dlq"]["delayed"],
        "drain_s": drain_s, "stopped": why, "cpu": cpu, "exited": exited,
        "backlog_peak": max((s[1] for s in samples), default=None),
        "backlog_at_enqueue_end": after_enqueue[0][1] if after_enqueue else None,
        # Samples before enqueueing ended in which the queue held nothing
        # visible (the first is skipped: nothing was sent yet).
        "empty_samples": sum(1 for t, v, _, _ in samples[1:] if t < enqueue_s and v == 0),
        "enqueue_samples": sum(1 for t, _, _, _ in samples[1:] if t < enqueue_s),
        "accepted_at_enqueue_end": max((a for t, _, _, a in samples if t <= enqueue_s), default=None),
        "in_flight_peak": max((s[2] for s in samples), default=None),
        "pair_log": accepts["pair_limited"], "tightest": tightest, "over_cap_runs": over_cap,
        "logs": log_summary(logs),
    }
    return row


# --- report ----------------------------------------------------------------

# (header, key, width, decimals or None for text/integers)
COLUMNS = [
    ("K", "k", 2, None), ("G", "g", 2, None), ("cap", "cap", 4, None), ("sent", "sent", 5, None),
    ("enq/s", "enqueue_rate", 6, 0), ("achv/cap", "ratio", 8, 2), ("steady/cap", "steady_ratio", 10, 2),
    ("max1s", "max_window", 5, None), ("130429", "throttled", 6, None), ("131056", "pair_limited", 6, None),
    ("dups", "duplicates", 4, None), ("lost", "lost", 4, None), ("keyed", "keyed", 5, None),
    ("writes/msg", "writes_per_msg", 10, 2), ("queued", "queued", 6, None), ("dead", "dead", 4, None),
    ("drain s", "drain_s", 7, 1), ("stopped", "stopped", -14, None),
]


def table(rows):
    lines = [" ".join(d.cell(h, w, None) for h, _, w, _ in COLUMNS).rstrip()]
    for row in rows:
        lines.append(" ".join(d.cell(row[key], w, dec) for _, key, w, dec in COLUMNS).rstrip())
    return "\n".join(lines)


def details(row):
    """The lines under the table for one run: where the time and writes went."""
    k, cap = row["k"], row["cap"]
    out = [f"K={k}:"]
    out.append(f"  enqueue: {row['sent']} sent with 2xx in {row['enqueue_s']:.1f} s ({row['enqueue_rate']:.0f}/s); "
               f"moto's SNS -> SQS fan-out runs inside Publish, so it was done when the last 2xx came "
               f"({row['enqueue_s']:.1f} s after the first request)"
               + ("; slower than the cap: the enqueue side (moto) bound the run"
                  if row["enqueue_rate"] < cap else ""))
    if row["refused"]:
        out.append(f"  not accepted by the gateways: {row['refused']}")
    out.append(f"  SQS backlog (visible): {row['backlog_at_enqueue_end']} when enqueueing ended, peak "
               f"{row['backlog_peak']}; in flight/delayed peak {row['in_flight_peak']}; "
               f"fake: {row['accepted']} accepted, peak {row['peak_accepted']} accepted in 1 s")
    moto_share = row["cpu"]["moto"] / row["drain_s"] if row["drain_s"] else 0
    after = row["drain_s"] - row["enqueue_s"]
    if after > max(3.0, 0.25 * row["drain_s"]):
        where = (f"delivery ended {after:.0f} s after the last enqueue: the pollers (and the DynamoDB calls "
                 f"they make on moto) bound the run, not the fan-out")
    elif row["enqueue_rate"] < cap:
        where = "enqueueing (moto's Publish with its fan-out) was slower than the cap and delivery kept up: it bound the run"
    else:
        where = "enqueueing beat the cap and delivery ended with it"
    out.append(f"  moto: {moto_share:.0%} of one core over the run (one Python process: about one core is its "
               f"ceiling, so its answers slow down as it nears it); {where}")
    out.append(f"  while enqueueing: {row['accepted_at_enqueue_end']} accepted at the fake by the end of it; the "
               f"queue held nothing visible in {row['empty_samples']} of {row['enqueue_samples']} one-second "
               f"samples (the pollers had received everything)")
    out.append("  CPU s during the run: " + ", ".join(f"{role} {secs:.1f}" for role, secs in row["cpu"].items())
               + f" (of {(os.cpu_count() or 1) * row['drain_s']:.0f} on {os.cpu_count()} cores in {row['drain_s']:.0f} s)")
    series = sorted(row["series"].items(), key=lambda kv: (-kv[1], kv[0]))
    out.append(f"  fleet writes: {row['writes']:.0f} = " +
               (", ".join(f"{item}/{outcome} {n:.0f}" for (item, outcome), n in series) or "none")
               + f"; per accepted message {row['writes_per_msg']:.2f}")
    if row["scrape_failed"]:
        out.append(f"  /metrics not read: {'; '.join(row['scrape_failed'])}")
    bad = [(key, first, retry) for key, _, first, retry in row["keyed_detail"]
           if not (first[1] and first[1] == retry[1])]
    if bad:
        out.append("  keyed retries that did not keep their id: " +
                   "; ".join(f"{key}: gateway 0 {first[0]} {first[1]}, gateway 1 {retry[0]} {retry[1]}"
                             for key, first, retry in bad))
    if row["tightest"] is not None:
        out.append(f"  spacing at the fake: the tightest {cap + 1} consecutive requests took {row['tightest']} ms "
                   f"(Herald's slots are 1/(0.97 x cap) = {1000 / (0.97 * cap):.1f} ms apart, so {cap + 1} should "
                   f"take >= {cap * 1000 / (0.97 * cap):.0f} ms); {row['over_cap_runs']} runs of {cap + 1} "
                   f"fit in under 1 s")
    if row["pair_log"]:
        out.append("  131056 (recipient, ms since its last accept): " +
                   ", ".join(f"{to} {since}" for _, to, since in row["pair_log"][:10]))
    for e in row["exited"]:
        out.append(f"  {e}")
    for level, msg, n, (log, example) in row["logs"]:
        out.append(f"  log {level} x{n}: {msg}")
        out.append(f"    e.g. {log}: {example[:400]}")
    return "\n".join(out)


NOTES = """\
K / G      = SQS pollers (herald-consumer) / gateways (herald-gateway, SNS mode), all on this machine
achv/cap   = (accepted - 1) / (last accept - first accept) at the fake, / cap
steady/cap = accepted per second between the 5th and 95th percentile of accept times, / cap (no ramp, no pair-rate tail)
max1s      = most requests that reached the fake in any 1-s window (refused ones too; compare with cap)
130429     = refused by the fake for throughput: more than cap requests in its sliding 1-s window
131056     = refused by the fake for the pair rate: the recipient's last accept arrived < pair window ago
dups       = accepted requests whose text was already accepted; lost = texts sent with 2xx - unique texts accepted
keyed      = keyed requests whose retry on gateway 1 (same key and body) got gateway 0's messageId
writes/msg = herald_fleet_writes_total (all items and outcomes) summed over every gateway's and consumer's
             /metrics, / accepted requests; status writes are not in it
queued     = SQS visible + in flight + delayed at the end; dead = the dead-letter queue's depth
drain s    = from the first request until every text was accepted (or the run stopped)"""


def binaries_built():
    """When the release binaries used were built (with --no-build they may
    predate the working tree)."""
    stamps = []
    for name in ("herald-gateway", "herald-consumer", os.path.join("examples", "bench_graph_fake")):
        try:
            stamps.append(f"{os.path.basename(name)} {datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(RELEASE, name))):%Y-%m-%d %H:%M:%S}")
        except OSError:
            stamps.append(f"{os.path.basename(name)} missing")
    return ", ".join(stamps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateways", type=int, default=2, help="herald-gateway processes (default 2)")
    ap.add_argument("--consumers", default="1,3,6", help="SQS pollers per run, comma-separated (default 1,3,6)")
    ap.add_argument("--cap-mps", type=int, default=20, help="the number's cap at the fake and WHATSAPP_MAX_MPS")
    ap.add_argument("--latency-ms", type=int, default=50, help="the fake's answer latency")
    ap.add_argument("--pair-window-ms", type=int, default=6000, help="the fake's pair rate window (131056)")
    ap.add_argument("--messages", type=int, default=None, help="bulk messages per run (default cap x 20)")
    ap.add_argument("--max-wait", type=int, default=150, help="longest wait for delivery per run, s")
    ap.add_argument("--stall", type=int, default=30, help="give up after this many seconds without a request")
    ap.add_argument("--consumer-log-level", default="info,herald::delivery=debug",
                    help="LOG_LEVEL of the consumers, logged to files (default info, with the delivery "
                         "decisions' debug lines: why a message was held)")
    ap.add_argument("--consumer-env", action="append", default=[], metavar="NAME=VALUE",
                    help="experiments: set (or override) a consumer variable, e.g. WHATSAPP_PAIR_RATE=0")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--enqueue-while-delivering", dest="enqueue_first", action="store_false",
                    help="start the consumers before enqueueing (default: fill the queue first, then start "
                         "them, so moto's publish path does not compete with the fleet it measures)")
    args = ap.parse_args()
    try:
        args.consumer_env = dict(item.split("=", 1) for item in args.consumer_env)
    except ValueError:
        sys.exit("--consumer-env takes NAME=VALUE")
    if args.messages is None:
        args.messages = args.cap_mps * 20
    try:
        ks = [int(k) for k in args.consumers.split(",") if k.strip()]
    except ValueError:
        sys.exit(f"--consumers: {args.consumers!r} is not a list of numbers (e.g. 1,3,6)")
    if not ks or min(ks) < 1 or args.gateways < 1:
        sys.exit("need at least one gateway and one consumer")
    signal.signal(signal.SIGTERM, d.on_signal)

    venv = d.find_venv()
    missing = d.sqs_prerequisites(venv)
    if missing:
        sys.exit(f"cannot run: {missing}")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "herald-gateway", "--bin", "herald-consumer",
                        "--example", "bench_graph_fake"], cwd=ROOT, check=True)

    work = tempfile.mkdtemp(prefix="herald-fleet-bench-")
    rows, remarks = [], []
    started, load_before = datetime.datetime.now(), os.getloadavg()[0]
    try:
        moto = d.start_moto(venv, work)
        aws = Aws(venv, moto[1], work)
        fake, fake_port = start_fake(args, work)
        for k in ks:
            print(f"K={k} pollers, G={args.gateways} gateways: {args.messages} messages + {KEYED} keyed, "
                  f"cap {args.cap_mps}/s, latency {args.latency_ms} ms", flush=True)
            d.attempt(rows, remarks, f"K={k}", lambda: run_fleet(k, args, work, aws, moto, fake, fake_port),
                      lambda row: table([row]) + "\n" + details(row))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        d.clean_up(work)

    d.require_rows(rows, remarks)
    report = "\n".join(d.run_lines("fleet", started, load_before) + [
        f"binaries: {binaries_built()}",
        f"one moto_server (SNS, SQS, DynamoDB) and one fake Graph API (cap {args.cap_mps}/s sliding window "
        f"counting refused requests, latency {args.latency_ms} ms, pair window {args.pair_window_ms} ms); "
        f"every consumer has WHATSAPP_MAX_MPS={args.cap_mps}, WHATSAPP_PAIR_RATE=1, STATUS_TABLE"
        + "".join(f", {name}={value}" for name, value in args.consumer_env.items()) + "; "
        f"{args.messages} messages per run ({REPEAT_MESSAGES} of them to {REPEAT_PEOPLE} recipients), "
        f"round-robin over the gateways, + {KEYED} keyed",
        "",
        table(rows),
        "",
        "\n".join(details(r) for r in rows),
        "",
        NOTES,
    ] + remarks)
    d.write_report(report, d.results_path("fleet"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Herald's status-webhook benchmark: signed provider reports on the embedded default.

    python3 bench/webhooks.py [--provider whatsapp|infobip] [--messages 60000] [--duration 1] [--rounds 2]

--provider infobip (issue 11) sends SMS instead and posts Infobip delivery
reports (DELIVERED_TO_OPERATOR then DELIVERED_TO_HANDSET of every message)
to /webhooks/infobip in batches of 100, signed with X-Infobip-Signature;
the console channel answers an SMS with its own id, as Infobip does, so each
report is a real merge. Goal: >= 10,000 reports/s in batches of 100 on one
core. Results go to bench/results/<date>-infobip-webhooks.txt.

Setup (as bench/run.py): the gateway pinned to CPU 0, the load generators on
CPU 1. The gateway runs on the embedded default with console delivery (to
/dev/null) and the WhatsApp webhook on. --messages messages are sent first
(1000-entry batches); the console channel's provider id is `console.<id>`, so
the reports below name real, submitted messages and each one is a real merge
(status row read, merged, written, in the writer's group commit).

Each round measures:
  - batches of 50: wrk on 8 connections POSTs signed bodies of 50 distinct
    reports (sent, delivered, read of every message, in order) for
    --duration s, each body at most once (there are more bodies than one
    second takes; should they run out, wrk stops sending and the figure is
    a lower bound): reports/s = requests/s x 50, p50/p99 acknowledgement;
  - batches of 1 at a fixed 1,000 reports/s (a paced Python client on
    keep-alive connections): p50/p99 acknowledgement, client overhead included;
  - GET /api/v1/messages/{id}: 2,000 sequential reads on one keep-alive
    connection: p50/p99.
Goals (issue 10): >= 10,000 reports/s in batches of 50; p99 <= 10 ms at
1,000 reports/s; GET p99 <= 2 ms. Needs wrk and taskset. Results go to
bench/results/<date>-webhooks.txt.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402  (bench/run.py: process and wrk helpers)

SECRET = "bench-app-secret"
STATUSES = ("sent", "delivered", "read")


def signed(payload):
    body = json.dumps(payload, separators=(",", ":"))
    sig = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    return body, sig


def report_body(reports):
    statuses = [{"id": wamid, "status": st, "timestamp": str(1750000000 + i),
                 "recipient_id": "14155550123",
                 "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}}
                for i, (wamid, st) in enumerate(reports)]
    return signed({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
                                        "metadata": {"display_phone_number": "15550783881",
                                                     "phone_number_id": "106540352242922"},
                                        "statuses": statuses}}]}]})


def infobip_body(reports):
    """A signed Infobip delivery-report body: (message id, status) pairs."""
    names = {"sent": (2, "DELIVERED_TO_OPERATOR"), "delivered": (5, "DELIVERED_TO_HANDSET")}
    results = [{"bulkId": "bench", "messageId": mid, "to": "14155550123", "sender": "Herald",
                "sentAt": "2026-01-01T10:00:01.123+0000", "doneAt": f"2026-01-01T10:00:{2 + i % 50:02d}.000+0000",
                "messageCount": 1, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
                "status": {"groupId": 3, "groupName": "DELIVERED", "id": names[st][0], "name": names[st][1],
                           "description": ""},
                "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": False}}
               for i, (mid, st) in enumerate(reports)]
    body = json.dumps({"results": results}, separators=(",", ":"))
    return body, hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()


# Per provider: its route, signature header, report body, statuses reported
# per message and batch size.
PROVIDERS = {
    "whatsapp": ("/webhooks/whatsapp", "X-Hub-Signature-256", report_body, STATUSES, 50),
    "infobip": ("/webhooks/infobip", "X-Infobip-Signature", infobip_body, ("sent", "delivered"), 100),
}


def send_messages(port, count, defaults=None):
    """Sends `count` messages in 1000-entry batches; returns their ids."""
    ids = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        body = json.dumps({"defaults": defaults or {"message": "Your order has shipped"},
                           "messages": [{"to": f"+1415555{(start + i) % 10000:04d}"} for i in range(n)]})
        conn.request("POST", "/api/v1/send/batch", body,
                     {"content-type": "application/json", "x-api-key": base.KEY})
        answer = json.loads(conn.getresponse().read())
        ids += [r["messageId"] for r in answer["results"] if r["status"] == "accepted"]
    return ids


def get_view(conn, mid):
    conn.request("GET", f"/api/v1/messages/{mid}", headers={"x-api-key": base.KEY})
    response = conn.getresponse()
    return response.status, response.read()


def wait_submitted(port, ids, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.time() + timeout
    for mid in (ids[-1], ids[len(ids) // 2], ids[0]):
        while True:
            status, body = get_view(conn, mid)
            if status == 200 and json.loads(body)["status"] == "submitted":
                break
            if time.time() > deadline:
                raise SystemExit(f"message {mid} never submitted: {status} {body[:200]}")
            time.sleep(0.2)


def paced_singles(port, reports, rate, provider="whatsapp", connections=4):
    """POSTs one report per request at `rate` requests/s; returns latencies (ms)."""
    route, header, make_body, _, _ = PROVIDERS[provider]
    bodies = [make_body([r]) for r in reports]
    latencies, lock = [], threading.Lock()
    interval = connections / rate
    start = time.perf_counter() + 0.2

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for j, (body, sig) in enumerate(bodies[k::connections]):
            due = start + j * interval + k * (interval / connections)
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t0 = time.perf_counter()
            conn.request("POST", route, body, {"content-type": "application/json", header: sig})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"webhook answered {response.status}")
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def one_round(args, work, r):
    port = base.free_port()
    data_dir = tempfile.mkdtemp(prefix=f"data-{r}-", dir=work)
    env = {"API_KEYS": f"bench:{base.KEY}", "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warn",
           "HERALD_DATA_DIR": data_dir, "DELIVERY": "console", "WHATSAPP_APP_SECRET": SECRET,
           "INFOBIP_WEBHOOK_SECRET": SECRET, "BATCH_MAX_MESSAGES": "1000"}
    route, header, make_body, statuses, per_batch = PROVIDERS[args.provider]
    proc = base.start([os.path.join(base.RELEASE, "herald-gateway")], env)
    try:
        base.wait_port(port, proc)
        sms = args.provider == "infobip"
        ids = send_messages(port, args.messages,
                            {"channel": "sms", "message": "Your order has shipped"} if sms else None)
        wait_submitted(port, ids)
        pids = ids if sms else [f"console.{i}" for i in ids]
        # Every message's statuses, in order, `per_batch` reports per body.
        reports = [(w, st) for st in statuses for w in pids]
        split = len(reports) - 3000  # the last 3,000 are kept for the paced singles
        batches = [make_body(reports[i:i + per_batch]) for i in range(0, split, per_batch)]
        requests_file = os.path.join(work, f"requests-{r}.lua")
        with open(requests_file, "w") as f:
            f.write("local reqs = {}\n")
            for body, sig in batches:
                f.write("reqs[#reqs+1] = wrk.format('POST', '%s', "
                        "{['Content-Type']='application/json', ['%s']='%s'}, [==[%s]==])\n"
                        % (route, header, sig, body))
            # Each body once: wrk stops when every distinct body was answered.
            f.write("local i = 0\nlocal done = 0\nfunction request()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n"
                    "function response(status, headers, body)\n  done = done + 1\n"
                    "  if done >= #reqs then wrk.thread:stop() end\nend\n")
        load = base.wrk(f"http://127.0.0.1:{port}{route}", args.duration, 8, requests_file)
        sent_requests = load["requests"]
        singles = paced_singles(port, reports[split:], rate=1000, provider=args.provider)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        gets = []
        for mid in ids[:2000]:
            t0 = time.perf_counter()
            status, _ = get_view(conn, mid)
            gets.append((time.perf_counter() - t0) * 1000)
            assert status == 200
        return {
            "batch_reports_per_s": load["rps"] * per_batch, "batch_p50": load["p50"], "batch_p99": load["p99"],
            "batch_non2xx": load["non2xx"], "batch_requests": sent_requests, "distinct_batches": len(batches),
            "single_p50": percentile(singles, 50), "single_p99": percentile(singles, 99),
            "get_p50": percentile(gets, 50), "get_p99": percentile(gets, 99),
            "rss": base.peak_rss_mib(proc),
        }
    finally:
        base.stop(proc)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--provider", choices=sorted(PROVIDERS), default="whatsapp")
    p.add_argument("--messages", type=int, default=60000)
    p.add_argument("--duration", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        base.subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "herald-gateway"],
                            cwd=base.ROOT, check=True)
    work = tempfile.mkdtemp(prefix="herald-webhook-bench-")
    rows = [one_round(args, work, r) for r in range(args.rounds)]
    med = lambda k: statistics.median(row[k] for row in rows)  # noqa: E731
    per_batch = PROVIDERS[args.provider][4]
    goal = ("goals: >= 10,000 reports/s in batches of 50; p99 <= 10 ms at 1,000 reports/s; GET p99 <= 2 ms"
            if args.provider == "whatsapp" else "goal: >= 10,000 reports/s in batches of 100 on one core")
    lines = [
        f"Herald {args.provider} status-webhook benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}: "
        f"embedded default, gateway on CPU 0, load on CPU 1; {args.messages} messages; {args.rounds} round(s), medians",
        f"batches of {per_batch} (wrk, 8 connections, {args.duration} s): {med('batch_reports_per_s'):,.0f} reports/s, "
        f"p50 {med('batch_p50'):.2f} ms, p99 {med('batch_p99'):.2f} ms, non-2xx {sum(r['batch_non2xx'] for r in rows)}; "
        f"requests {[r['batch_requests'] for r in rows]} for {rows[0]['distinct_batches']} distinct bodies "
        f"(each at most once)",
        f"batches of 1 at 1,000 reports/s (paced, 4 keep-alive connections): p50 {med('single_p50'):.2f} ms, "
        f"p99 {med('single_p99'):.2f} ms",
        f"GET /api/v1/messages/{{id}} (2,000 sequential): p50 {med('get_p50'):.3f} ms, p99 {med('get_p99'):.3f} ms",
        f"gateway peak RSS {med('rss'):.1f} MiB",
        goal,
    ]
    text = "\n".join(lines)
    print(text)
    name = "webhooks" if args.provider == "whatsapp" else "infobip-webhooks"
    path = os.path.join(base.ROOT, "bench", "results", f"{datetime.date.today()}-{name}.txt")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"written to {os.path.relpath(path, base.ROOT)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Herald's batch benchmark: POST /api/v1/send/batch with 1000-entry batches.

    python3 bench/batch.py [--duration 10] [--connections 4] [--rounds 2] [--templates]

With the gateway pinned to CPU 0 and wrk plus the zero-latency SNS sink
(examples/bench_sns_sink.rs) on CPU 1 (bench/run.py's setup), each round runs:
  - latency: one connection sending 1000-entry batches back to back; p50/p99
    of the whole batch's answer (every entry durably published before it);
  - throughput: --connections connections; messages accepted per second
    (batches/s x 1000, checked against the messages that reached the sink);
for the SNS mode with aws-sdk-sns, with SNS_CLIENT=lean, and for the embedded
default (SQLite group commit; console delivery to /dev/null on the same core).
With --templates, the SNS (aws-sdk-sns) mode runs three ways instead: text
batches (the baseline), template batches with no account (unchecked), and the
same template batches checked against an account of 250 templates synced from
a fake Graph API (a standard-library HTTP server in this script); the report
gives checked/text and checked/unchecked p50.
Needs wrk (apt-get install wrk) and taskset. Results go to
bench/results/<date>-batch.txt (-batch-templates.txt).
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402  (bench/run.py: process and wrk helpers)

BATCH = 1000


WABA = "102290129340398"


def batch_body(template=False):
    messages = [{"to": f"+1415555{i:04d}"} for i in range(BATCH)]
    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    content = {"template": {"name": "template_125", "language": "en_US", "components": [
        {"type": "header", "parameters": [text("A-42")]},
        {"type": "body", "parameters": [text("Mark"), text("FALL25")]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("A-42")]}]}} if template \
        else {"message": "Sale ends tonight: 20% off everything"}
    return json.dumps({"defaults": content, "messages": messages}, separators=(",", ":"))


def graph_templates():
    """A fake Graph API serving one page of 250 templates (Meta's cap on names)."""
    data = [{"name": f"template_{i}", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
             "components": [{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
                            {"type": "BODY", "text": "Hi {{1}}, code {{2}}"},
                            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"},
                                                            {"type": "URL", "text": "Track",
                                                             "url": "https://x.example/t/{{1}}"}]}]}
            for i in range(250)]
    body = json.dumps({"data": data}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_synced(port, timeout=20):
    """Waits until the gateway lists the fake account's templates."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/templates",
                                             headers={"x-api-key": base.KEY})
            with urllib.request.urlopen(request, timeout=2) as answer:
                if len(json.load(answer)["templates"]) == 250:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway never synced the fake account's templates")


def measure(name, env, port, duration, connections, script, sink_port=None, synced=False):
    proc = base.start([os.path.join(base.RELEASE, "herald-gateway")], env)
    try:
        base.wait_port(port, proc)
        if synced:
            wait_synced(port)
        url = f"http://127.0.0.1:{port}/api/v1/send/batch"
        base.wrk(url, 1, 1, script)  # warm-up
        latency = base.wrk(url, duration, 1, script)
        before = base.sink_stats(sink_port) if sink_port else None
        load = base.wrk(url, duration, connections, script)
        time.sleep(0.5)
        reached = base.sink_stats(sink_port)["messages"] - before["messages"] if sink_port else None
        accepted_batches = load["requests"] - load["non2xx"]
        return {
            "name": name,
            "p50_ms": latency["p50"], "p99_ms": latency["p99"],
            "msgs_per_s": load["rps"] * BATCH,
            "non2xx": latency["non2xx"] + load["non2xx"],
            "reached_sink": reached, "accepted": accepted_batches * BATCH,
            "rss": base.peak_rss_mib(proc),
        }
    finally:
        base.stop(proc)


def post_script(work, name, body):
    """A wrk script POSTing `body` with the bench key."""
    body_path = os.path.join(work, f"{name}.json")
    with open(body_path, "w") as f:
        f.write(body)
    script = os.path.join(work, f"{name}.lua")
    with open(script, "w") as f:
        f.write(f"local f = io.open('{body_path}'); wrk.body = f:read('*a'); f:close()\n"
                f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
                f"wrk.headers['x-api-key'] = '{base.KEY}'\n")
    return script


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--templates", action="store_true",
                   help="text vs unchecked vs checked template batches, SNS mode (see above)")
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        base.subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "herald-gateway",
                             "--example", "bench_sns_sink"], cwd=base.ROOT, check=True)
    work = tempfile.mkdtemp(prefix="herald-batch-bench-")
    script = post_script(work, "text", batch_body())
    template_script = post_script(work, "template", batch_body(template=True))
    graph = graph_templates() if args.templates else None
    sink_port = base.free_port()
    sink = base.start([os.path.join(base.RELEASE, "examples", "bench_sns_sink"), f"127.0.0.1:{sink_port}"], cpu="1")
    base.wait_port(sink_port, sink)
    common = {"API_KEYS": f"bench:{base.KEY}", "HOST": "127.0.0.1", "LOG_LEVEL": "warn"}
    rows = []
    try:
        for r in range(args.rounds):
            port = base.free_port()
            sns = dict(common, PORT=str(port), SNS_TOPIC_ARN=base.TOPIC,
                       AWS_ENDPOINT_URL=f"http://127.0.0.1:{sink_port}", AWS_REGION="us-east-1",
                       AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
            run = lambda name, env, s, **kw: rows.append(  # noqa: E731
                measure(name, env, port, args.duration, args.connections, s, sink_port, **kw))
            if args.templates:
                whatsapp = dict(sns, WHATSAPP_ACCESS_TOKEN="bench", WHATSAPP_PHONE_NUMBER_ID="106540352242922",
                                WHATSAPP_API_BASE_URL=f"http://127.0.0.1:{graph.server_port}")
                run("text", whatsapp, script)
                run("template, unchecked", whatsapp, template_script)
                run("template, checked", dict(whatsapp, WHATSAPP_BUSINESS_ACCOUNT_ID=WABA), template_script,
                    synced=True)
                continue
            run("SNS (aws-sdk-sns)", sns, script)
            run("SNS (SNS_CLIENT=lean)", dict(sns, SNS_CLIENT="lean"), script)
            data_dir = tempfile.mkdtemp(prefix="data-", dir=work)
            emb = dict(common, PORT=str(port), HERALD_DATA_DIR=data_dir, DELIVERY="console")
            rows.append(measure("embedded (durable)", emb, port, args.duration, args.connections, script))
    finally:
        base.stop(sink)
        if graph:
            graph.shutdown()
    report(rows, args)


def report(rows, args):
    lines = [f"Herald batch benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}: {BATCH}-entry batches, "
             f"gateway on CPU 0, wrk and the SNS sink on CPU 1; {args.rounds} round(s) x {args.duration} s; "
             f"throughput with {args.connections} connections",
             f"command: {' '.join(['bench/batch.py'] + sys.argv[1:])}",
             f"{'mode':<24}{'p50 ms':>8}{'p99 ms':>8}{'msgs/s':>10}{'RSS MiB':>9}{'non-2xx':>8}  reached sink / accepted"]
    p50 = {}
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        med = lambda k: statistics.median(r[k] for r in mine)  # noqa: E731
        p50[name] = med("p50_ms")
        reached = ", ".join(f"{r['reached_sink']}/{r['accepted']}" for r in mine if r["reached_sink"] is not None)
        lines.append(f"{name:<24}{med('p50_ms'):>8.1f}{med('p99_ms'):>8.1f}{med('msgs_per_s'):>10.0f}"
                     f"{med('rss'):>9.1f}{sum(r['non2xx'] for r in mine):>8}  {reached or '-'}")
    if args.templates:
        lines.append(f"checked template p50 / text p50 = {p50['template, checked'] / p50['text']:.3f}; "
                     f"checked / unchecked template p50 = "
                     f"{p50['template, checked'] / p50['template, unchecked']:.3f} (bar: within 20%)")
    else:
        lines.append("targets: 1000-entry batch p50 <= 50 ms (embedded and SNS sink); >= 50,000 msgs/s through batches")
    text = "\n".join(lines)
    print(text)
    suffix = "-batch-templates" if args.templates else "-batch"
    path = os.path.join(base.ROOT, "bench", "results", f"{datetime.date.today()}{suffix}.txt")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"written to {os.path.relpath(path, base.ROOT)}")


if __name__ == "__main__":
    main()

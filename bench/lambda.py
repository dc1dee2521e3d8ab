#!/usr/bin/env python3
"""Herald's Lambda benchmark: herald-consumer under a Runtime API emulator.

    python3 bench/lambda.py [--invocations 20] [--latency-ms 100] [--mps 1000] [--batches 10,100]

examples/bench_lambda_emulator.rs plays AWS Lambda: it execs the release
herald-consumer with AWS_LAMBDA_RUNTIME_API pointing at itself, hands it SQS
events of N records (envelopes to a fake Graph API on the same server that
answers after --latency-ms), and measures:
  - cold start: exec -> the consumer's first GET /runtime/invocation/next
    (the end of Lambda's Init phase);
  - per invocation: event handed out -> response posted, which is what Lambda
    bills; billed ms per record = median invocation / batch size.
It runs each batch size --repeat times (fresh process each time, so each run
has its own cold start) and prints the medians. Results go to
bench/results/<date>-lambda.txt.

The pacer still applies under Lambda (WHATSAPP_MAX_MPS, per process): at
--mps 80 a batch of 100 needs 1.25 s of pacing alone, so the billed time per
record at batch 100 is bound by the cap, not by Herald. The default --mps 1000
is Meta's upgraded tier.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--invocations", type=int, default=20)
    p.add_argument("--latency-ms", type=int, default=100)
    p.add_argument("--mps", type=int, default=1000)
    p.add_argument("--batches", default="10,100")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--bin", "herald-consumer",
         "--example", "bench_lambda_emulator"],
        cwd=ROOT, check=True)
    consumer = os.path.join(RELEASE, "herald-consumer")
    emulator = os.path.join(RELEASE, "examples", "bench_lambda_emulator")
    size_mib = os.path.getsize(consumer) / (1 << 20)

    lines = [f"herald-consumer: {size_mib:.1f} MiB; provider latency {args.latency_ms} ms; "
             f"WHATSAPP_MAX_MPS {args.mps}; {args.invocations} invocations x {args.repeat} runs"]
    header = f"{'batch':>6} {'cold start ms':>14} {'invocation ms (median)':>23} {'billed ms/record':>17} {'failures':>9}"
    lines.append(header)
    for batch in [int(b) for b in args.batches.split(",")]:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [emulator, consumer, str(batch), str(args.invocations),
                 str(args.latency_ms), str(args.mps)],
                check=True, capture_output=True, text=True, timeout=600)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        cold = statistics.median(r["coldStartMs"] for r in runs)
        inv = statistics.median(r["invocationMsMedian"] for r in runs)
        per = statistics.median(r["billedMsPerRecord"] for r in runs)
        failures = sum(r["batchItemFailures"] for r in runs)
        lines.append(f"{batch:>6} {cold:>14.1f} {inv:>23.1f} {per:>17.2f} {failures:>9}")
        lines.append("       runs: " + "; ".join(
            f"cold {r['coldStartMs']:.1f} ms, {r['billedMsPerRecord']:.2f} ms/record" for r in runs))
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "results", f"{datetime.date.today()}-lambda.txt")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"written to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())

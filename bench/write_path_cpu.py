"""CPU time per stored submission and per delivered outcome: `python -m bench.write_path_cpu [--root DIR]`.

CPU time, not wall time: the fsyncs of synchronous=FULL and a shared machine make wall time noisy, while what a
change to the SQL layer costs shows up as the process's own CPU. --root runs another checkout's code (A/B).
"""
import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def store(writer, count, threads):
    def one_thread(index):
        for number in range(count // threads):
            writer.save({"form": "contact", "name": f"Visitor {index}", "email": f"v{index}-{number}@example.com",
                         "message": f"Message {number} from thread {index}", "extra": {"budget": "small"}},
                        [{"kind": "lead", "channel": "email", "target": "owner@example.com",
                          "message_id": f"<{number}>"},
                         {"kind": "lead", "channel": "webhook", "target": "https://example.com/hook",
                          "message_id": f"{index}-{number}"}],
                        key=("contact", f"{index}-{number}"))
    workers = [threading.Thread(target=one_thread, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def deliver(outbox, db, limit):
    """Claim and record every due message, as the delivery worker does; return how many."""
    done = 0
    while True:
        token, rows = outbox.claim(db, "bench", time.time(), 60, limit)
        if not rows:
            return done
        for row in rows:
            outbox.record(db, row, token, "sent", time.time(), "250 OK")
        done += len(rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    import database
    import outbox
    import submissions
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/postbox.db"
        db = database.open_db(path)
        database.migrate(db)
        writer = submissions.SubmissionWriter(path, timeout=60)
        started = cpu_seconds()
        store(writer, args.count, args.threads)
        stored = cpu_seconds() - started
        delivery_db = database.open_db(path, synchronous="NORMAL")
        started = cpu_seconds()
        delivered = deliver(outbox, delivery_db, 50)
        recorded = cpu_seconds() - started
    print(f"{args.root}: {stored / args.count * 1e6:.0f} µs CPU per stored submission,"
          f" {recorded / delivered * 1e6:.0f} µs CPU per claimed and recorded message ({delivered})")


if __name__ == "__main__":
    main()

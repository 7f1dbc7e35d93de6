"""Soak: many short jobs in a row through the app's HTTP API, as a Space visitor or a script would
send them, watching the server process for leaks.

After every job it records the server's resident memory, threads, open file descriptors and the
files in its temporary folder (gradio's cache of every image and plot it served, plus the
workbench's downloads; the app runs with its own TMPDIR so only its files are counted). Jobs
alternate between an Unlearn run with live previews and a Quick erase (train, grids, metrics), the
two that write the most files. Goal: after warm-up every column is flat: memory and threads do not
grow with the job count, and temp files stop growing once the cache cleanup (ui/layout.py,
CACHE_CLEANUP: every 60 s, files older than 180 s) has started removing them.

Run:   python benchmarks/soak.py [--jobs 30]
Smoke: python benchmarks/soak.py --smoke --model <micro demo folder>   (2 jobs)
Runtime on the 2-core CPU with the defaults: about 10 min (each job 10 iterations, then a pause
of --settle seconds so that the cleanup's schedule is part of the run).
Writes soak.json and soak.png under benchmarks/results/.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil
from gradio_client import Client

from _common import REPO, BenchParser, app_process, figure, format_table, save_figure, write_results

POLL_SECONDS = 0.5


def temp_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


def wait_until_finished(client: Client, api_name: str) -> str:
    """Poll a status endpoint until its job has ended; the final progress HTML."""
    while True:
        progress = client.predict(api_name=api_name)[0]
        if "<b>Running</b>" not in progress and "<b>Waiting</b>" not in progress:
            return progress
        time.sleep(POLL_SECONDS)


def run_job(client: Client, index: int, iterations: int) -> tuple[str, str]:
    """Job `index`: even ones an Unlearn run with 2 previews, odd ones a Quick erase."""
    concepts = ("striped", "dotted", "checkered")
    concept = concepts[index // 2 % len(concepts)]
    if index % 2 == 0:
        client.predict(concept, "style", "kscu", iterations, 1.5e-4, "xattn", "plain", "", index, 50, 24, 50, 2, api_name="/start_unlearning")
        return "unlearn", wait_until_finished(client, "/unlearn_status")
    client.predict(concept, "style", api_name="/quick_erase")
    return "quick erase", wait_until_finished(client, "/quick_erase_status")


def measure(process: psutil.Process, tmp: Path) -> dict:
    return {"rss_mb": process.memory_info().rss / 2**20, "threads": process.num_threads(), "open_files": process.num_fds(),
            "temp_files": temp_files(tmp)}


def main() -> None:
    parser = BenchParser(__doc__)
    parser.option("--jobs", 30, 2, "sequential jobs", int)
    parser.option("--iterations", 10, 2, "unlearning iterations of each job (and Quick erase's)", int)
    parser.option("--quick-eval", 8, 2, "test prompts per metric set in Quick erase", int)
    parser.option("--settle", 200, 0, "seconds to wait after the last job, then measure once more (the cleanup runs every 60 s)", int)
    args = parser.parse()
    model = args.model or str(REPO / "assets" / "demo-model")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kscu-soak-") as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "app.log"
        app_tmp = tmp / "app-tmp"
        app_tmp.mkdir()
        extra = ("--quick-iterations", str(args.iterations), "--quick-eval", str(args.quick_eval))
        with app_process(Path(model), log, *extra, env={"TMPDIR": str(app_tmp)}) as (url, popen):
            server = psutil.Process(popen.pid)
            client = Client(url, verbose=False)
            start = time.time()
            rows.append({"job": 0, "kind": "start", "state": "-", "seconds": 0.0, **measure(server, app_tmp)})
            for index in range(args.jobs):
                begin = time.time()
                kind, progress = run_job(client, index, args.iterations)
                state = "done" if "<b>Finished</b>" in progress else "NOT DONE"
                rows.append({"job": index + 1, "kind": kind, "state": state, "seconds": time.time() - begin, **measure(server, app_tmp)})
                print(format_table(rows[-1:], list(rows[-1])), flush=True)
            if args.settle:
                time.sleep(args.settle)
                rows.append({"job": args.jobs, "kind": f"after {args.settle} s idle", "state": "-", "seconds": 0.0, **measure(server, app_tmp)})
            total = time.time() - start
    columns = ["job", "kind", "state", "seconds", "rss_mb", "threads", "open_files", "temp_files"]
    print(format_table(rows, columns))
    fig, axes = figure(1, 4, width=3.2, height=2.6)
    for ax, key in zip(axes[0], ("rss_mb", "threads", "open_files", "temp_files")):
        ax.plot([r["job"] for r in rows], [r[key] for r in rows], marker=".")
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("jobs finished")
    save_figure(fig, args, "soak")
    warm = rows[len(rows) // 2]
    last = rows[-1]
    summary = {"jobs": args.jobs, "all_done": all(r["state"] in ("done", "-") for r in rows), "seconds": total,
               **{f"{key}_mid": warm[key] for key in ("rss_mb", "threads", "open_files", "temp_files")},
               **{f"{key}_end": last[key] for key in ("rss_mb", "threads", "open_files", "temp_files")}}
    write_results(args, "soak", {"rows": rows}, summary)


if __name__ == "__main__":
    main()

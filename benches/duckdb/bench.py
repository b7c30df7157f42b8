"""kpi-engine against DuckDB on the same work, in one run (issue 17). Run by benches/duckdb.sh.

    python bench.py [--deals N] [--runs R] [--kpi BIN] [--work DIR] [--keep] [--threads 1,2]

1. The data: `kpi demo --scale N/48 --seed 2026 --until 2026-11-21` (the records bench_eval
   writes) into a root with copies of kpis/ and scripts/; exported to one ENTITY.csv per entity
   of kpis/schema.toml in the format `kpi import` reads (header = field names, times RFC 3339
   UTC with milliseconds, bools true/false, empty = NULL). These CSVs feed both sides.
2. Engine import: `kpi import ENTITY FILE` of every CSV (teams first) into a fresh root; the
   wall time of the 13 processes, rows/s.
3. Engine cold: a new `kpi eval --kpi <all 35> --period 2025-Q1..2026-Q4 --as-of <end of data>
   --format json` process on the imported database, R times (wall time, peak RSS).
4. Engine warm: `kpi serve` on that root; every team scorecard x period GET once (the first,
   cold evaluation in the server, while the first start closes the last quarter in the
   background), a wait until that close is done, then R times: an edit of the first row of deals.csv (its
   first number field + 1) and its undo (the row as it was), two real ingests, and GET them all
   again ("after a one-deal edit"), then R times: the same edit and undo of the first record of
   every entity but teams and owners, so that every query shape is recomputed and every table
   patched, and GET them all ("after edits of every entity"). The scorecard values are
   checked against DuckDB's too. Peak RSS (VmHWM) of the server at the end.
5. DuckDB load: a new process (duck.py load) creating a DuckDB database from the same CSVs,
   R times (2 threads); rows/s, peak RSS.
6. DuckDB compute: a new process per thread count (duck.py compute), R runs each on the loaded
   database; the first run of the process and the best; peak RSS.
7. Every engine value (KPI x team x period) against DuckDB's (relative tolerance 1e-9; no data
   must match no data), and every value of the salesperson scorecard (`kpi eval --scorecard
   sales_reps`: KPI x person x period) against DuckDB's same SQL over the records' owners
   (duck.py people); mismatches are listed, and the exit status is 1 if there are any.
8. The table of figures and ratios (engine / DuckDB) against the goals of issue 17.

Timings are wall clock; the machine's load average is printed before and after, because other
work on a shared machine inflates everything.
"""

import argparse
import csv
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import tomllib
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import duck  # noqa: E402  (the KPI list; DuckDB itself runs in child processes)

SEED = 2026
UNTIL = "2026-11-21"
TEAM_QUARTERS = 48  # leaf teams x quarters of the demo: scale = deals / this
TOLERANCE = 1e-9
ADMIN_TOKEN = "bench-duckdb-admin"
FIRST_ENTITIES = ["teams", "owners"]  # imported first: records name teams and owners


def parse_args():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--deals", type=int, default=100_000)
    a.add_argument("--runs", type=int, default=3, help="repetitions of each timed step")
    a.add_argument("--import-runs", type=int, default=1, help="repetitions of the import")
    a.add_argument("--kpi", default=str(REPO / "target" / "release" / "kpi"))
    a.add_argument("--work", default=None, help="default target/bench_duckdb/N")
    a.add_argument("--keep", action="store_true", help="reuse the demo database and CSVs")
    a.add_argument("--threads", default="1,2", help="DuckDB thread counts for the compute")
    a.add_argument("--skip-serve", action="store_true")
    a.add_argument("--skip-floor", action="store_true", help="no SQLite floor for the import (it needs as much disk again as the database)")
    a.add_argument("--data-only", action="store_true", help="stop after writing the demo database and CSVs")
    args = a.parse_args()
    if args.work is None:
        args.work = str(REPO / "target" / "bench_duckdb" / str(args.deals))
    return args


# ------------------------------------------------------------------ helpers


def log(*parts):
    print(*parts, flush=True)


def loadavg():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def run_child(cmd, stdout=None, env=None):
    """Runs cmd; returns (wall seconds, peak RSS kB of that child, stdout text or None)."""
    t = time.perf_counter()
    out = open(stdout, "w") if stdout else subprocess.PIPE
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env)
    captured = None
    if not stdout:
        captured = p.stdout.read().decode()
    err = p.stderr.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if stdout:
        out.close()
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, cmd))} failed ({p.returncode}):\n{err}")
    return wall, usage.ru_maxrss, captured


def stats(xs):
    """best, median, spread ((max - min) / best) of a list of seconds."""
    best = min(xs)
    return {
        "best": best,
        "median": statistics.median(xs),
        "spread": (max(xs) - best) / best if best else 0.0,
        "runs": xs,
    }


def fmt_runs(xs):
    return ", ".join(f"{x:.3f}" for x in xs)


def fresh_root(root):
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for sub in ("kpis", "scripts"):
        shutil.copytree(REPO / sub, root / sub)


# ------------------------------------------------------------------ schema and periods


def schema():
    """entity -> [(field, type)] in the order of kpis/schema.toml, teams and owners first."""
    doc = tomllib.loads((REPO / "kpis" / "schema.toml").read_text())
    out = {}
    for entity, spec in doc["entity"].items():
        fields = []
        for name, t in spec["fields"].items():
            t = t["type"] if isinstance(t, dict) else t
            fields.append((name, t.rstrip("?")))
        out[entity] = fields
    order = [e for e in FIRST_ENTITIES if e in out] + [e for e in out if e not in FIRST_ENTITIES]
    return {e: out[e] for e in order}


def library_kpis():
    ids = set()
    for f in (REPO / "kpis").glob("*.toml"):
        doc = tomllib.loads(f.read_text())
        ids.update(doc.get("kpi", {}).keys())
    return ids


class Calendar:
    def __init__(self):
        s = tomllib.loads((REPO / "kpis" / "settings.toml").read_text())
        self.tz = ZoneInfo(s.get("timezone", "UTC"))
        self.fsm = int(s.get("fiscal_year_start_month", 1))

    def quarter_of(self, ms):
        d = datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(self.tz)
        rel = d.year * 12 + d.month - 1 - (self.fsm - 1)
        return rel // 12, (rel % 12) // 3 + 1

    def quarter(self, year, q):
        """(id, start ms, end ms) of fiscal quarter q of year."""

        def start(y, q):
            m = y * 12 + (self.fsm - 1) + 3 * (q - 1)
            local = datetime(m // 12, m % 12 + 1, 1, tzinfo=self.tz)
            return int(local.timestamp() * 1000)

        ny, nq = (year, q + 1) if q < 4 else (year + 1, 1)
        return f"{year}-Q{q}", start(year, q), start(ny, nq)

    def shift(self, year, q, n):
        k = year * 4 + (q - 1) + n
        return k // 4, k % 4 + 1


def iso_ms(ms):
    d = datetime.fromtimestamp(ms // 1000, timezone.utc).replace(microsecond=(ms % 1000) * 1000)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def duck_params(cal, as_of):
    """The eight quarters ending with the one holding as-of, their buckets (see duck.py)."""
    ly, lq = cal.quarter_of(as_of - 1)
    universe = [cal.quarter(*cal.shift(ly, lq, n)) for n in range(-8, 1)]  # prev of first .. last
    points = {u[1] for u in universe} | {universe[-1][2]}
    spans = []
    for i in range(1, len(universe)):
        pid, start, end = universe[i]
        _, pstart, pend = universe[i - 1]
        if as_of < end:  # open: like for like (SPEC 16)
            span = max(as_of - start, 0)
            cur, prev = (start, start + span), (pstart, min(pstart + span, pend))
        else:
            cur, prev = (start, end), (pstart, pend)
        points |= {cur[1], prev[1]}
        spans.append((pid, (start, end), cur, prev))
    bounds = sorted(points)
    idx = lambda t: bounds.index(t) + 1  # noqa: E731  (bucket of t: bounds at or before it)
    periods = [
        {
            "id": pid,
            "lo": idx(p[0]),
            "hi": idx(p[1]),
            "clo": idx(c[0]),
            "chi": idx(c[1]),
            "plo": idx(v[0]),
            "phi": idx(v[1]),
        }
        for pid, p, c, v in spans
    ]
    return {"bounds": [iso_ms(b) for b in bounds], "periods": periods, "as_of": iso_ms(as_of)}


# ------------------------------------------------------------------ data


def demo(args, work, scale):
    root = work / "demo-root"
    db = root / "crm.db"
    stamp = work / "demo.stamp"
    want = f"scale={scale} seed={SEED} until={UNTIL}"
    if args.keep and db.exists() and stamp.exists() and stamp.read_text() == want:
        log(f"demo database: {db} (reused, {want})")
        return db, None
    fresh_root(root)
    if stamp.exists():
        stamp.unlink()
    cmd = [args.kpi, "--root", root, "demo", "--force", "--scale", str(scale)]
    cmd += ["--seed", str(SEED), "--until", UNTIL]
    wall, _, out = run_child(cmd)
    log(f"demo database ({want}): {wall:.1f} s")
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    stamp.write_text(want)
    return db, wall


def cell_sql(field, t):
    q = f'"{field}"'
    if t == "time":
        return (
            f"CASE WHEN {q} IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%S', {q} / 1000, "
            f"'unixepoch') || '.' || printf('%03d', {q} % 1000) || 'Z' END"
        )
    if t == "bool":
        return f"CASE {q} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"
    return q


def export(args, work, db, sch):
    """One ENTITY.csv per entity, in the format kpi import reads. Returns entity -> rows."""
    out = work / "csv"
    stamp = work / "csv.stamp"
    want = (work / "demo.stamp").read_text()
    if args.keep and stamp.exists() and stamp.read_text() == want:
        counts = json.loads((work / "csv.counts").read_text())
        log(f"CSVs: {out} (reused)")
        return out, counts, None
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    counts = {}
    t = time.perf_counter()
    for entity, fields in sch.items():
        cols = ", ".join(cell_sql(f, ty) for f, ty in fields)
        cur = con.execute(f'SELECT {cols} FROM "{entity}" ORDER BY rowid')
        with open(out / f"{entity}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow([f for f, _ in fields])
            n = 0
            while True:
                rows = cur.fetchmany(50_000)
                if not rows:
                    break
                w.writerows(rows)
                n += len(rows)
        counts[entity] = n
    wall = time.perf_counter() - t
    con.close()
    (work / "csv.counts").write_text(json.dumps(counts))
    stamp.write_text(want)
    size = sum(p.stat().st_size for p in out.iterdir())
    log(f"exported {sum(counts.values())} rows to {len(counts)} CSVs ({size / 1e6:.0f} MB) in {wall:.1f} s")
    return out, counts, wall


# ------------------------------------------------------------------ engine


def engine_import(args, work, csv_dir, sch, counts):
    """kpi import of every CSV into a fresh root, import-runs times; returns the root, times."""
    root = work / "import-root"
    totals, peak = [], 0
    for _ in range(args.import_runs):
        fresh_root(root)
        per = {}
        for entity in sch:
            if counts.get(entity, 0) == 0:
                continue
            cmd = [args.kpi, "--root", root, "import", entity, csv_dir / f"{entity}.csv"]
            wall, rss, out = run_child(cmd)
            per[entity] = wall
            peak = max(peak, rss)
        totals.append(sum(per.values()))
        log(
            f"kpi import: {sum(per.values()):.2f} s ("
            + ", ".join(f"{e} {s:.2f}" for e, s in per.items())
            + ")"
        )
    return root, stats(totals), peak


def sqlite_floor(args, work, root, csv_dir, sch, counts):
    """What SQLite's own loader takes for the same rows: the sqlite3 shell's `.import` of every
    CSV into an empty copy of the engine's tables (the DDL read from the imported root), in
    WAL mode with synchronous=NORMAL as the engine writes, the team and time indexes made
    after the rows, one transaction per entity. No cell is checked and
    times stay text, so it writes more bytes than the engine: a floor for a writer that goes
    through SQLite's B-trees, not a competitor. None when sqlite3 is not on PATH."""
    if args.skip_floor:
        return None
    if not shutil.which("sqlite3"):
        log("sqlite3 not on PATH: no SQLite floor for the import")
        return None
    src = sqlite3.connect(f"file:{root / 'crm.db'}?mode=ro", uri=True)
    ddl = dict(src.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL"))
    indexes = src.execute(
        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    src.close()
    db = work / "floor.db"
    totals = []
    for _ in range(args.import_runs):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(";".join(ddl[e] for e in sch if e in ddl))
        con.close()
        per = {}
        for entity in sch:
            if counts.get(entity, 0) == 0:
                continue
            make = ";\n".join(sql for t, sql in indexes if t == entity)
            script = (
                "PRAGMA synchronous=NORMAL;\nPRAGMA cache_size=-262144;\nBEGIN IMMEDIATE;\n"
                f".import --csv --skip 1 {csv_dir / (entity + '.csv')} {entity}\n"
                f"{make};\nCOMMIT;\n"
            )
            t = time.perf_counter()
            subprocess.run(["sqlite3", db], input=script.encode(), check=True, capture_output=True)
            per[entity] = time.perf_counter() - t
        totals.append(sum(per.values()))
        log(
            f"sqlite3 .import (SQLite's own loader, no checks): {sum(per.values()):.2f} s ("
            + ", ".join(f"{e} {s:.2f}" for e, s in per.items())
            + ")"
        )
    return stats(totals)


def engine_eval(args, work, root, kpis, params):
    """R new `kpi eval` processes without the column snapshot (KPI_COLUMN_SNAPSHOT=off: every
    column read out of SQLite), then R with it: the first of those finds none, reads SQLite
    and writes it, the rest read it. The figure is the best run with the snapshot; the output
    of the first and last runs must be byte-identical."""
    cmd = eval_cmd(args, root, kpis, params)
    out = work / "engine-eval.json"
    plain = work / "engine-eval-plain.json"
    off = dict(os.environ, KPI_COLUMN_SNAPSHOT="off")
    walls_off = [run_child(cmd, stdout=plain, env=off)[0] for _ in range(args.runs)]
    log(f"kpi eval (new process, no snapshot): {fmt_runs(walls_off)} s")
    shutil.rmtree(root / "crm.db-columns", ignore_errors=True)
    walls, peak = [], 0
    for _ in range(args.runs):
        wall, rss, _ = run_child(cmd, stdout=out)
        walls.append(wall)
        peak = max(peak, rss)
    log(
        f"kpi eval (new process, the first writes the snapshot): {fmt_runs(walls)} s, "
        f"peak RSS {peak / 1024:.0f} MB"
    )
    if out.read_bytes() != plain.read_bytes():
        raise SystemExit("bench: kpi eval printed other results with the column snapshot")
    values = {}
    for report in json.loads(out.read_text()):
        for t in report["teams"]:
            for k in t["kpis"]:
                values.setdefault(k["kpi"], {}).setdefault(t["team"], {})[report["period"]] = k[
                    "value"
                ]
    return stats(walls), peak, values


def eval_cmd(args, root, kpis, params):
    """`kpi eval` of the KPIs for every team over the benchmark's quarters, as JSON."""
    first, last = params["periods"][0]["id"], params["periods"][-1]["id"]
    cmd = [args.kpi, "--root", root, "eval", "--kpi", ",".join(kpis)]
    cmd += ["--period", f"{first}..{last}", "--as-of", params["as_of"], "--format", "json"]
    return cmd + live_flag(args)


def live_flag(args):
    """`--live` where `kpi eval` has it (SPEC 16: a frozen period is otherwise read back, not
    computed): the benchmark measures computation."""
    out = subprocess.run([args.kpi, "eval", "--help"], capture_output=True, text=True).stdout
    return ["--live"] if "--live" in out else []


def engine_breakdown(args, root, kpis, params):
    """One more kpi eval with RUST_LOG=kpi_engine=debug: where its wall time goes (the column
    loads and query shapes the engine logs with their times; the rest is process start,
    configuration check, formulas, scoring and output)."""
    cmd = eval_cmd(args, root, kpis, params)
    env = dict(os.environ, RUST_LOG="kpi_engine=debug", NO_COLOR="1")
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"bench: {cmd} failed: {p.stderr.decode()}")
    loads, shapes = {}, []
    strip = re.compile(r"\x1b\[[0-9;]*m")
    lines = [strip.sub("", x) for x in p.stderr.decode().splitlines()]
    # `kpi eval` first checks the configuration with a dry run over an in-memory database
    # (loads and shapes of no rows): skip to the second load of the team tree.
    teams = [i for i, x in enumerate(lines) if "loaded columns entity=teams " in x]
    def at(line):  # the timestamp that starts a log line, in seconds
        return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()

    load_spans, shape_spans = [], []
    for line in lines[teams[1] if len(teams) > 1 else 0 :]:
        m = re.search(r"loaded columns entity=(\S+).* rows=(\d+) ms=(\d+)", line)
        if m:
            loads[m.group(1)] = loads.get(m.group(1), 0) + int(m.group(3))
            load_spans.append((at(line) - int(m.group(3)) / 1e3, at(line)))
            continue
        m = re.search(r"executed shape .* us=(\d+)", line)
        if m:
            shape_spans.append((at(line) - int(m.group(1)) / 1e6, at(line)))
    # A column read lazily inside a shape is counted as a load, not as the shape's time.
    for lo, hi in shape_spans:
        inner = sum(b - a for a, b in load_spans if a >= lo - 1e-3 and b <= hi + 1e-3)
        shapes.append(max(0.0, (hi - lo) - inner) * 1e6)
    load_s = sum(loads.values()) / 1e3
    shape_s = sum(shapes) / 1e6
    log(
        f"kpi eval breakdown (one logged run, {wall:.3f} s): column loads {load_s:.3f} s ("
        + ", ".join(f"{e} {ms / 1e3:.2f}" for e, ms in sorted(loads.items(), key=lambda x: -x[1]))
        + f"), {len(shapes)} query shapes {shape_s:.3f} s without those loads (largest "
        + ", ".join(f"{u / 1e3:.0f}" for u in sorted(shapes, reverse=True)[:5])
        + f" ms), the rest {wall - load_s - shape_s:.3f} s"
    )
    return {"wall": wall, "loads": load_s, "shapes": shape_s, "per_entity": loads}


def engine_in_process(args, work, demo_db, scale, as_of):
    """examples/bench_eval --only engine on the demo database (stamped as its own, linked into
    its directory): the engine warm in one process, every scorecard x period x team in one
    evaluation over columns already loaded, as issue 5 measured it. Returns the best warm
    time, or None when the example is not built."""
    exe = Path(args.kpi).parent / "examples" / "bench_eval"
    if not exe.exists():
        log(f"(no {exe}: cargo build --release --example bench_eval for the in-process figures)")
        return None
    d = work / "bench_eval"
    d.mkdir(exist_ok=True)
    db = d / f"crm-{args.deals}.db"
    if not db.exists():
        # A copy, not a link: the stamp below (and the engine) must not write into a demo
        # database another work directory shares (--keep with a linked demo-root).
        shutil.copyfile(demo_db, db)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS _kpi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute(
        "INSERT OR REPLACE INTO _kpi_meta (key, value) VALUES ('bench_eval', ?)",
        (f"scale={scale} seed={SEED} until={as_of}",),
    )
    con.commit()
    con.close()
    cmd = [exe, "--deals", str(args.deals), "--dir", d, "--keep", "--only", "engine"]
    cmd += ["--warm-runs", str(args.runs)]
    _, _, out = run_child(cmd)
    cold = re.search(r"engine cold: ([0-9.]+) s", out)
    warm = re.search(r"engine warm: (.*)", out)
    if not (cold and warm):
        log(out)
        return None
    runs = [float(x.split()[0]) for x in warm.group(1).split(",")]
    log(f"in process (bench_eval --only engine): cold {cold.group(1)} s, warm {fmt_runs(runs)} s")
    return stats(runs)


class Server:
    def __init__(self, args, root):
        env = dict(os.environ, KPI_ADMIN_TOKEN=ADMIN_TOKEN, RUST_LOG="warn")
        env.pop("KPI_READ_TOKEN", None)
        self.log = open(root / "serve.log", "w")
        t = time.perf_counter()
        self.p = subprocess.Popen(
            [args.kpi, "--root", root, "serve", "--addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
        )
        line = self.p.stdout.readline().decode().strip()
        self.ready = time.perf_counter() - t
        if "http://" not in line:
            raise SystemExit(f"bench: kpi serve did not start: {line!r} (see {root}/serve.log)")
        self.base = line.rsplit(" ", 1)[-1]
        self.http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path):
        with self.http.open(self.base + path, timeout=600) as r:
            return json.loads(r.read())

    def post(self, path, body):
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with self.http.open(req, timeout=600) as r:
            return json.loads(r.read())

    def status(self, field):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith(field):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def first_record(csv_dir, entity, fields):
    """The first row of ENTITY.csv as a JSON record (an unchanged upsert)."""
    types = dict(fields)
    with open(csv_dir / f"{entity}.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    rec = {}
    for k, v in row.items():
        if v == "":
            continue
        t = types[k]
        rec[k] = (
            int(v)
            if t == "integer"
            else float(v)
            if t == "real"
            else v in ("true", "1")
            if t == "bool"
            else v
        )
    return rec


def wait_for_the_first_close(server, timeout=600):
    """Waits until the server has frozen a period (SPEC 16: on its first start it closes the
    quarter that closed last, evaluating every scorecard and person in the background), so the
    warm rounds measure requests, not that close; returns the seconds waited."""
    t = time.perf_counter()
    while not server.get("/api/periods")["frozen"]:
        if time.perf_counter() - t > timeout:
            raise SystemExit("bench: kpi serve froze no period")
        time.sleep(0.05)
    return time.perf_counter() - t


def edit_and_undo(server, entity, rec, fields):
    """Two real ingests that leave the record as it was: its first number field (not the id)
    + 1, then the record itself (an unchanged upsert where it has no number field)."""
    num = next((k for k, t in fields if k != "id" and t in ("integer", "real") and k in rec), None)
    if num is not None:
        server.post(f"/api/records/{entity}", [dict(rec, **{num: rec[num] + 1})])
    server.post(f"/api/records/{entity}", [rec])


def team_scorecards():
    doc = tomllib.loads((REPO / "kpis" / "scorecards.toml").read_text())
    return [k for k, v in doc["scorecard"].items() if v.get("subjects", "teams") == "teams"]


def engine_serve(args, root, csv_dir, sch, counts, params):
    cards = team_scorecards()
    live = "&live=true" if live_flag(args) else ""
    paths = [
        f"/api/scorecards/{c}?period={p['id']}&as_of={params['as_of']}{live}"
        for c in cards
        for p in params["periods"]
    ]
    server = Server(args, root)
    log(f"kpi serve: listening after {server.ready:.2f} s (columns read)")
    values = {}

    def round_trip():
        t = time.perf_counter()
        for path in paths:
            r = server.get(path)
            for team in r["teams"]:
                for k in team["kpis"]:
                    values.setdefault(k["kpi"], {}).setdefault(team["team"], {})[r["period"]] = k[
                        "value"
                    ]
        return time.perf_counter() - t

    try:
        first = round_trip()
        log(f"serve, first evaluation of {len(paths)} scorecard x period GETs: {first:.3f} s")
        closed = wait_for_the_first_close(server)
        log(f"serve, the first start's close of the last quarter done {closed:.3f} s after the GETs")
        deals = first_record(csv_dir, "deals", sch["deals"])
        after_deals, posts = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            edit_and_undo(server, "deals", deals, sch["deals"])
            posts.append(time.perf_counter() - t)
            after_deals.append(round_trip())
        log(f"serve, after a one-deal edit and undo: {fmt_runs(after_deals)} s (POSTs {fmt_runs(posts)} s)")
        every = [
            (e, first_record(csv_dir, e, sch[e]))
            for e in sch
            if e not in FIRST_ENTITIES and counts.get(e, 0) > 0
        ]
        after_all = []
        for _ in range(args.runs):
            for e, rec in every:
                edit_and_undo(server, e, rec, sch[e])
            after_all.append(round_trip())
        log(f"serve, after an edit and undo of one record of each of {len(every)} entities: {fmt_runs(after_all)} s")
        hwm, rss = server.status("VmHWM:"), server.status("VmRSS:")
        log(f"kpi serve memory: VmHWM {hwm / 1024:.0f} MiB, VmRSS {rss / 1024:.0f} MiB")
    finally:
        server.stop()
    return {
        "ready": server.ready,
        "first": first,
        "after_deals": stats(after_deals),
        "after_all": stats(after_all),
        "hwm_kb": hwm,
        "gets": len(paths),
    }, values


def engine_people(args, root, params):
    """The salesperson scorecard (SPEC 14) of every person over the benchmark's quarters from one
    `kpi eval` (not timed): {kpi: {owner: {period: value}}}, the people the engine scores."""
    first, last = params["periods"][0]["id"], params["periods"][-1]["id"]
    cmd = [args.kpi, "--root", root, "eval", "--scorecard", "sales_reps"]
    cmd += ["--period", f"{first}..{last}", "--as-of", params["as_of"], "--format", "json"]
    out = json.loads(subprocess.run(cmd + live_flag(args), capture_output=True, check=True).stdout)
    values = {}
    for report in out if isinstance(out, list) else [out]:
        for person in report["owners"]:
            for k in person["kpis"]:
                values.setdefault(k["kpi"], {}).setdefault(person["owner"], {})[
                    report["period"]
                ] = k["value"]
    return values


def count(values):
    return sum(len(periods) for subjects in values.values() for periods in subjects.values())


# ------------------------------------------------------------------ DuckDB


def duck_child(*argv):
    cmd = [sys.executable, str(HERE / "duck.py"), *map(str, argv)]
    wall, rss, out = run_child(cmd)
    res = json.loads(out)
    res["child_maxrss_kb"] = rss
    res["process_wall"] = wall
    return res


def duck_load(args, work, csv_dir, sch):
    schema_json = work / "schema.json"
    schema_json.write_text(json.dumps(sch))
    db = work / "duck.db"
    totals, peak = [], 0
    for _ in range(args.runs):
        r = duck_child("load", db, csv_dir, schema_json, 2)
        totals.append(r["total"])
        peak = max(peak, r["child_maxrss_kb"])
        version = r["duckdb"]
    log(f"DuckDB {version} load of the CSVs (2 threads): {fmt_runs(totals)} s, peak RSS {peak / 1024:.0f} MB")
    return db, stats(totals), peak, r["rows"], version


def duck_compute(args, work, db, params, threads):
    pj = work / "params.json"
    pj.write_text(json.dumps(params))
    out = {}
    for n in threads:
        vj = work / f"duck-values-{n}.json"
        r = duck_child("compute", db, pj, n, args.runs, vj)
        runs = r["runs"]
        steps = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in r["first_run_steps"].items())
        log(
            f"DuckDB compute, {n} thread(s): {fmt_runs(runs)} s (first run of the process first), "
            f"peak RSS {r['child_maxrss_kb'] / 1024:.0f} MB; first run by step, ms: {steps}"
        )
        out[n] = {
            "first": runs[0],
            "stats": stats(runs),
            "rss_kb": r["child_maxrss_kb"],
            "values": json.loads(vj.read_text()),
        }
    return out


def duck_people(work, db):
    """DuckDB's values per owner (duck.py people: the same SQL over the records' owners)."""
    out = work / "duck-people.json"
    r = duck_child("people", db, work / "params.json", out)
    log(f"DuckDB per person: {r['runs'][0]:.3f} s, peak RSS {r['child_maxrss_kb'] / 1024:.0f} MB")
    return json.loads(out.read_text())


# ------------------------------------------------------------------ comparison and summary


def compare(engine, ducks, label):
    """Every (KPI, team, period) of `engine` against DuckDB; returns (count, no data, mismatches)."""
    n, nodata, bad, largest = 0, 0, [], 0.0
    for kpi, teams in sorted(engine.items()):
        for team, periods in sorted(teams.items()):
            for period, e in sorted(periods.items()):
                n += 1
                d = ducks.get(kpi, {}).get(team, {}).get(period, "missing")
                if e is None and d is None:
                    nodata += 1
                    continue
                if isinstance(e, (int, float)) and isinstance(d, (int, float)):
                    rel = 0.0 if e == d else abs(e - d) / max(abs(e), abs(d))
                    if rel <= TOLERANCE:
                        largest = max(largest, rel)
                        continue
                bad.append(f"{kpi} {team} {period}: engine {e}, DuckDB {d}")
    log(
        f"{label}: {n} values compared ({nodata} no data on both sides, largest relative "
        f"difference of the others {largest:.1e}): {len(bad)} mismatch(es)"
    )
    for b in bad[:30]:
        log("  " + b)
    return n, bad


def summary(r):
    log("")
    log(f"== issue 17 at {r['deals']} deals ({r['rows']} rows in {r['entities']} CSVs); {r['load_after']}")
    duck2 = r["duck"][max(r["duck"])]
    rows = []

    def line(what, engine, duck, goal, ratio, ok):
        rows.append((what, engine, duck, goal, ratio, ok))

    ec = r["eval"]["best"]
    # DuckDB's figure: its best run with its best thread count (on a loaded machine one thread
    # can beat two).
    best_t = min(r["duck"], key=lambda t: r["duck"][t]["stats"]["best"])
    dc = r["duck"][best_t]["stats"]["best"]
    per_t = "; ".join(
        f"{t} thr best {d['stats']['best']:.3f}, first {d['first']:.3f}" for t, d in r["duck"].items()
    )
    line(
        "cold: new kpi eval process vs DuckDB compute",
        f"{ec:.3f} s (median {r['eval']['median']:.3f}, spread {r['eval']['spread']:.0%})",
        f"{dc:.3f} s ({per_t})",
        "<= 1.0x",
        ec / dc,
        ec / dc <= 1.0,
    )
    if r.get("serve"):
        s = r["serve"]
        for key, what in (
            ("after_all", "warm: serve, after edits of every entity"),
            ("after_deals", "warm: serve, after a one-deal edit"),
        ):
            w = s[key]["best"]
            line(
                what,
                f"{w:.3f} s (median {s[key]['median']:.3f}, spread {s[key]['spread']:.0%})",
                f"{dc:.3f} s ({best_t} thr)",
                "<= 0.5x",
                w / dc,
                w / dc <= 0.5,
            )
    if r.get("in_process"):
        w = r["in_process"]["best"]
        line(
            "warm: in one process, all periods (bench_eval)",
            f"{w:.3f} s (median {r['in_process']['median']:.3f}, spread {r['in_process']['spread']:.0%})",
            f"{dc:.3f} s ({best_t} thr)",
            "<= 0.5x",
            w / dc,
            w / dc <= 0.5,
        )
    er = r["rows"] / r["import"]["best"]
    dr = r["rows"] / r["load"]["best"]
    line(
        "import: kpi import vs DuckDB CSV load, rows/s",
        f"{er / 1e6:.3f} M/s ({r['import']['best']:.2f} s)",
        f"{dr / 1e6:.3f} M/s ({r['load']['best']:.2f} s)",
        ">= 0.7x",
        er / dr,
        er / dr >= 0.7,
    )
    if r.get("floor"):
        fr = r["rows"] / r["floor"]["best"]
        line(
            "import floor: sqlite3 .import (no checks) vs DuckDB",
            f"{fr / 1e6:.3f} M/s ({r['floor']['best']:.2f} s)",
            f"{dr / 1e6:.3f} M/s ({r['load']['best']:.2f} s)",
            "(none)",
            fr / dr,
            True,
        )
    if r.get("serve"):
        hwm = r["serve"]["hwm_kb"]
        dpeak = max(duck2["rss_kb"], r["load_rss_kb"])
        line(
            "RSS: kpi serve VmHWM vs DuckDB peak",
            f"{hwm / 1024:.0f} MiB",
            f"{dpeak / 1024:.0f} MiB (load {r['load_rss_kb'] / 1024:.0f}, compute {duck2['rss_kb'] / 1024:.0f})",
            "<= 1.0x",
            hwm / dpeak,
            hwm / dpeak <= 1.0,
        )
    w = [max(len(str(x[i])) for x in rows) for i in range(4)]
    log(f"{'':{w[0]}}  {'engine':{w[1]}}  {'DuckDB':{w[2]}}  goal     e/D     met")
    for what, e, d, goal, ratio, ok in rows:
        log(f"{what:{w[0]}}  {e:{w[1]}}  {d:{w[2]}}  {goal:7}  {ratio:5.2f}x  {'yes' if ok else 'NO'}")
    log(f"values: {r['values']}")


def main():
    args = parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    threads = [int(x) for x in args.threads.split(",")]
    log(f"bench_duckdb: about {args.deals} deals, {args.runs} runs per step; nproc {os.cpu_count()}; {loadavg()}")
    scale = max(1, round(args.deals / TEAM_QUARTERS))
    sch = schema()
    kpis = [k for k, _ in duck.KPIS]
    lib = library_kpis()
    if set(kpis) != lib:
        log(f"warning: the library has KPIs {sorted(lib - set(kpis))} DuckDB does not compute; "
            f"DuckDB computes {sorted(set(kpis) - lib)} the library lacks")
    cal = Calendar()
    until = datetime.strptime(UNTIL, "%Y-%m-%d").replace(tzinfo=cal.tz) + timedelta(days=1)
    as_of = int(until.timestamp() * 1000)
    params = duck_params(cal, as_of)

    db, _ = demo(args, work, scale)
    csv_dir, counts, _ = export(args, work, db, sch)
    rows = sum(counts.values())
    log("rows: " + ", ".join(f"{e} {n}" for e, n in counts.items()) + f" ({rows} in all)")
    if args.data_only:
        return

    root, imp, imp_rss = engine_import(args, work, csv_dir, sch, counts)
    floor = sqlite_floor(args, work, root, csv_dir, sch, counts)
    ev, ev_rss, engine_values = engine_eval(args, work, root, kpis, params)
    engine_breakdown(args, root, kpis, params)
    in_process = engine_in_process(args, work, db, scale, as_of)
    serve, serve_values = (None, None)
    if not args.skip_serve:
        serve, serve_values = engine_serve(args, root, csv_dir, sch, counts, params)
    duck_db, load, load_rss, duck_rows, version = duck_load(args, work, csv_dir, sch)
    if duck_rows != counts:
        log(f"warning: DuckDB loaded {duck_rows}, the CSVs hold {counts}")
    ducks = duck_compute(args, work, duck_db, params, threads)

    reference = ducks[max(ducks)]["values"]
    n, bad = compare(engine_values, reference, "kpi eval vs DuckDB")
    for t, d in ducks.items():
        if d["values"] != reference:
            _, b = compare(d["values"], reference, f"DuckDB {t} thread(s) vs {max(ducks)}")
            bad += b
    if serve_values:
        _, b = compare(serve_values, reference, "kpi serve scorecards vs DuckDB")
        bad += b
    people = engine_people(args, root, params)
    _, b = compare(people, duck_people(work, duck_db), "kpi eval sales_reps per person vs DuckDB")
    bad += b if people else ["kpi eval sales_reps scored nobody"]
    summary(
        {
            "deals": counts.get("deals", 0),
            "rows": rows,
            "entities": len(counts),
            "load_after": loadavg(),
            "eval": ev,
            "serve": serve,
            "in_process": in_process,
            "import": imp,
            "floor": floor,
            "load": load,
            "load_rss_kb": load_rss,
            "duck": ducks,
            "values": f"{n} engine values and {count(people)} per person, "
            f"{len(bad)} mismatch(es) with DuckDB {version}",
        }
    )
    log(f"(kpi eval peak RSS {ev_rss / 1024:.0f} MB; kpi import peak RSS {imp_rss / 1024:.0f} MB)")
    log("times are wall clock on a shared machine: re-measure on a quiet one before quoting them")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference answers to the 22 TPC-H queries of examples/tpch/, computed by DuckDB.

Generates the data with Sluice's own generator (unless --data points at a generated
directory), runs every query in DuckDB (one thread, so floating-point sums are reproducible)
over the same Parquet files Sluice reads, and writes one CSV per query with a header of column
names, plus types.csv: one line per query, `qNN,<DuckDB type of each column>`, so that a
comparison knows which columns are floating point.

    python datasets/tpch/duckdb_answers.py                      # SF 0.01 -> examples/tpch/answers/sf0.01
    python datasets/tpch/duckdb_answers.py --sf 0.1 --out /tmp/answers-sf0.1

Values: NULL is an empty field; DECIMAL and integers are written exactly as DuckDB holds them
(`1234.5600`); DOUBLE as the shortest text that reads back to the same double (Python's
repr); DATE as YYYY-MM-DD. Needs the `duckdb` Python package.
"""
import argparse
import csv
import datetime
import decimal
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def statements(path):
    """The statements of a query file, without comments and Sluice's SET lines."""
    text = open(path).read()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    parts = [s.strip() for s in text.split(";")]
    return [s for s in parts if s and not re.match(r"(?i)^set\s", s)]


def cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (decimal.Decimal, int, str)):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError(f"unexpected {type(value).__name__} value {value!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sf", default="0.01", help="scale factor (default 0.01)")
    parser.add_argument("--data", help="a directory written by `sluice-datasets tpch` (default: generate into target/)")
    parser.add_argument("--out", help="answers directory (default examples/tpch/answers/sf<SF>)")
    parser.add_argument("--queries", default=os.path.join(ROOT, "examples", "tpch"))
    args = parser.parse_args()

    import duckdb

    data = args.data
    if data is None:
        data = os.path.join(ROOT, "datasets", f"tpch-sf{args.sf}")
        subprocess.run(
            ["cargo", "run", "--release", "-q", "-p", "sluice-datasets", "--",
             "tpch", "--sf", args.sf, "--out", data],
            cwd=ROOT, check=True)
    out = args.out or os.path.join(ROOT, "examples", "tpch", "answers", f"sf{args.sf}")
    os.makedirs(out, exist_ok=True)

    con = duckdb.connect()
    con.execute("SET threads = 1")
    for table in TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data}/{table}/*.parquet')")

    types = []
    for number in range(1, 23):
        name = f"q{number:02d}"
        result = None
        for statement in statements(os.path.join(args.queries, f"{name}.sql")):
            if re.match(r"(?i)^(select|with)\s", statement):
                relation = con.sql(statement)
                result = (relation.columns, [str(t) for t in relation.types], relation.fetchall())
            else:  # Q15's CREATE VIEW and DROP VIEW
                con.execute(statement)
        if result is None:
            sys.exit(f"{name}: no query in the file")
        columns, column_types, rows = result
        with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([cell(v) for v in row] for row in rows)
        types.append([name] + column_types)
        print(f"{name}: {len(rows)} rows")
    with open(os.path.join(out, "types.csv"), "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(types)
    print(f"answers written to {out} (duckdb {duckdb.__version__})")


if __name__ == "__main__":
    main()

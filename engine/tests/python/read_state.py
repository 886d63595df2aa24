"""Reads the keyed state of a Sluice checkpoint with pyarrow, as an outside tool would.

Usage: python read_state.py CHECKPOINT_DIR EXPECTED_JSON

CHECKPOINT_DIR is a completed checkpoint or savepoint (a directory with `_metadata`).
EXPECTED_JSON holds what the job computed up to that checkpoint:
    {"table": "groups", "value_column": "acc0_0", "counts": {"<key as hex>": <count>, ...}}

The script finds the one vertex with keyed state, opens each of its state files of that table
with pyarrow, and checks the files against `_metadata` (size, row count, key groups inside the
subtask's range) and their rows against the expected counts. It prints a one-line summary and
exits with status 1 and a message naming the file on the first mismatch.
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.ipc


def fail(message):
    print(f"read_state.py: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    checkpoint_dir, expected_path = sys.argv[1], sys.argv[2]
    with open(os.path.join(checkpoint_dir, "_metadata")) as f:
        metadata = json.load(f)
    with open(expected_path) as f:
        expected = json.load(f)
    table_name, value_column = expected["table"], expected["value_column"]

    keyed = [op for op in metadata["operators"] if op["key_groups"] is not None]
    vertices = sorted({op["vertex"] for op in keyed})
    if len(vertices) != 1:
        fail(f"expected one vertex with keyed state, found {vertices}")

    counts = {}
    files = 0
    for op in keyed:
        key_groups = op["key_groups"]
        for entry in op["files"]:
            if entry["table"] != table_name:
                continue
            path = os.path.join(checkpoint_dir, entry["path"])
            if os.path.getsize(path) != entry["bytes"]:
                fail(f"{path}: {os.path.getsize(path)} bytes, _metadata says {entry['bytes']}")
            table = pa.ipc.open_file(path).read_all()
            files += 1
            names = table.schema.names
            if names[:2] != ["key_group", "key"] or value_column not in names:
                fail(f"{path}: columns {names}")
            if table.schema.field("key_group").type != pa.uint32():
                fail(f"{path}: key_group is {table.schema.field('key_group').type}")
            if table.schema.field("key").type != pa.binary():
                fail(f"{path}: key is {table.schema.field('key').type}")
            if table.schema.field(value_column).type != pa.int64():
                fail(f"{path}: {value_column} is {table.schema.field(value_column).type}")
            if table.num_rows != entry["rows"]:
                fail(f"{path}: {table.num_rows} rows, _metadata says {entry['rows']}")
            for key_group in table.column("key_group").to_pylist():
                if not key_groups["start"] <= key_group < key_groups["end"]:
                    fail(f"{path}: key group {key_group} outside {key_groups} of subtask {op['subtask']}")
            keys = table.column("key").to_pylist()
            values = table.column(value_column).to_pylist()
            for key, value in zip(keys, values, strict=True):
                hex_key = key.hex()
                if hex_key in counts:
                    fail(f"{path}: key {hex_key} is in two state files")
                counts[hex_key] = value

    if files == 0:
        fail(f"no state file of table '{table_name}' in {checkpoint_dir}")
    if counts != expected["counts"]:
        fail(f"state {counts} differs from the job's counts {expected['counts']}")
    print(json.dumps({"vertex": vertices[0], "files": files, "keys": len(counts),
                      "rows": sum(counts.values())}))


if __name__ == "__main__":
    main()

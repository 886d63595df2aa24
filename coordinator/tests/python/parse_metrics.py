"""Parses a Prometheus text exposition (stdin) with prometheus_client's parser, the one
Prometheus' Python tooling uses, and prints its samples as JSON: [name, labels, value].
A malformed exposition makes the parser raise, and this script exit non-zero."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            samples.append([sample.name, sample.labels, sample.value])
    print(json.dumps(samples))


if __name__ == "__main__":
    main()

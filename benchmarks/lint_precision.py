"""Lint a real schema history offline, to measure the lint's precision.

    .venv/bin/python benchmarks/lint_precision.py DIR [--lint PATH] [--list]

Each ``patch-*.sql`` of DIR is loaded by patchset (as a deploy would) and linted
alone - its own pending set - with an empty catalog (no live table sizes: every
table is unknown, so severities come from the rules alone). Prints the number of
statements, the files the patch set refuses, the findings per severity and
rule, and with --list every warning and error (file, line, statement) to judge
by hand. --lint PATH lints with another version of lint.py (e.g. main's, for a
before/after comparison). The history itself is not part of the repository;
docs/lint.md records the figures and the judgement.
"""

import argparse
import collections
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), '.collections'))

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lint as current_lint  # noqa: E402
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import patchset  # noqa: E402


def load_lint(path):
    if not path:
        return current_lint
    spec = importlib.util.spec_from_file_location('lint_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('directory')
    parser.add_argument('--lint')
    parser.add_argument('--list', action='store_true')
    args = parser.parse_args()
    lint = load_lint(args.lint)
    findings, refused = [], []
    for name in sorted(os.listdir(args.directory)):
        if patchset.PATCH_NAME_RE.match(name) is None:
            continue
        try:
            patch = patchset.load_patch(os.path.join(args.directory, name))
        except patchset.PatchSetError as exc:
            refused.append(str(exc))
            continue
        findings += lint.lint_patches([patch], lint.Catalog(scan_bytes_per_second=200 * 1024 * 1024),
                                      lint.parse_options())
    counted = collections.Counter((f['severity'], f['rule']) for f in findings)
    flagged = [f for f in findings if f['severity'] != 'info']
    print('statements %d, files refused %d, warnings and errors %d'
          % (len(findings), len(refused), len(flagged)))
    for line in refused:
        print('  refused: %s' % line)
    for (severity, rule), number in sorted(counted.items()):
        print('%-8s %-36s %d' % (severity, rule, number))
    if args.list:
        for f in flagged:
            print('%s %s %s:%d %s' % (f['severity'], f['rule'], f['file'], f['line'], f['statement'][:100]))


if __name__ == '__main__':
    main()

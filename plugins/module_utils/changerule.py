# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change rule, for CI: a change carries schema patches or code, never both.

Launchpad's rule: a branch (a merge request) changes either the schema (patch
files in the patch directory) or the code, so that schema deploys (with their
short outage) and code rollouts (restarts, no outage) go out apart, each in
lockstep with the other. Checked on a git range ``base..head`` of the
application repository, before anything reaches a deploy:

- every changed path is ``schema`` (a patch file in the patch directory),
  ``code``, or ``neutral`` (globs: docs, tests, changelogs...); a change with
  both schema and code fails, naming one file of each;
- a new patch must be numbered after every patch that has landed (the patches
  of ``base``), so the deploy order is the landing order;
- a landed patch must not be edited, renamed or deleted (the deploy refuses an
  applied patch whose checksum changed; here it is caught before landing);
- a file in the patch directory named almost like a patch fails.

The changes are those of ``head`` since its merge base with ``base`` (what a
merge request shows: a branch that merged the target branch back in does not
carry the target's changes). ``decide`` is pure (changes in, verdict out);
``git_changes``/``landed_patches`` read the repository with the git command
line; ``check`` does both. Errors (no such commit, not a repository, no patch
directory) raise ChangeRuleError with one line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import os
import subprocess

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import (
    PatchSetError, format_revision, parse_patch_name)

SCHEMA, CODE, NEUTRAL = 'schema', 'code', 'neutral'

# Paths that go with either kind of change. ``*`` crosses directories
# (fnmatch), so ``docs/*`` is everything under docs/.
DEFAULT_NEUTRAL_GLOBS = (
    '*.md', '*.rst', '*.txt', 'docs/*', 'doc/*', 'tests/*', 'test/*', 'changelogs/*', 'CHANGELOG*',
    'LICENSE*', 'COPYING*', '.gitignore', '.github/*', '.gitlab-ci.yml', '.pre-commit-config.yaml',
)

GIT_TIMEOUT_SECONDS = 60


class ChangeRuleError(Exception):
    """The range or repository cannot be checked; str() is the one-line message."""


# -- pure decisions ------------------------------------------------------------------

def normalize_dir(patch_dir):
    """'./database/schema/' -> 'database/schema' (relative to the repository root)."""
    parts = [p for p in str(patch_dir).replace('\\', '/').split('/') if p not in ('', '.')]
    return '/'.join(parts)


def classify_path(path, patch_dir, neutral_globs=DEFAULT_NEUTRAL_GLOBS):
    """(kind, revision or None) of one repository path. A file directly in
    ``patch_dir`` named as a patch is schema; any other file there (a README)
    is neutral; a neutral glob makes a path neutral; the rest is code.
    PatchSetError for a mistyped patch name in the patch directory."""
    directory, name = os.path.split(path)
    if directory == patch_dir:
        revision = parse_patch_name(name)
        if revision is not None:
            return SCHEMA, revision
        return NEUTRAL, None
    if any(fnmatch.fnmatchcase(path, glob) for glob in neutral_globs):
        return NEUTRAL, None
    return CODE, None


def _more(paths):
    return ' (and %d more)' % (len(paths) - 1) if len(paths) > 1 else ''


def decide(changes, patch_dir, landed, neutral_globs=DEFAULT_NEUTRAL_GLOBS, range_text='the change'):
    """The verdict on one change.

    ``changes``: [{'status': 'A'|'M'|'D'|'R'|'C'|'T', 'path': new path,
    'old_path': for R and C}] as ``git diff --name-status`` gives them.
    ``landed``: the patch file names of the base (landed patches).
    Returns {'passed', 'kind' (schema-only, code-only, neutral-only, mixed,
    empty), 'files' [{'path', 'status', 'kind', 'old_path'}], 'schema',
    'code', 'neutral' (paths), 'new_patches', 'problems' (one line each),
    'msg' (one line)}.
    """
    patch_dir = normalize_dir(patch_dir)
    landed = set(landed)
    landed_revisions = sorted(r for r in (parse_patch_name(n) for n in landed) if r is not None)
    newest_landed = landed_revisions[-1] if landed_revisions else None
    files, problems = [], []
    schema, code, neutral, new_patches = [], [], [], []
    for change in changes:
        status = change['status'][:1]
        path = change['path']
        old_path = change.get('old_path')
        try:
            kind, revision = classify_path(path, patch_dir, neutral_globs)
            old_kind = classify_path(old_path, patch_dir, neutral_globs)[0] if old_path else None
        except PatchSetError as exc:
            problems.append('%s: %s' % (path, exc))
            continue
        files.append({'path': path, 'status': status, 'kind': kind, 'old_path': old_path})
        # A rename also removes its old path (a copy leaves it alone).
        for each_kind, each_path in [(kind, path)] + ([(old_kind, old_path)] if status == 'R' else []):
            {SCHEMA: schema, CODE: code, NEUTRAL: neutral}[each_kind].append(each_path)
        name = os.path.basename(path)
        old_name = os.path.basename(old_path) if old_path else None
        if status == 'R' and old_kind == SCHEMA and old_name in landed:
            problems.append('%s: the landed patch %s was renamed (its revision would change and the databases '
                            'that applied it would see it as missing): restore %s and put any change in a new patch'
                            % (path, old_name, old_path))
        elif status in ('M', 'T') and kind == SCHEMA and name in landed:
            problems.append('%s: a landed patch was edited (databases that applied it keep the old checksum and '
                            'the deploy refuses it): restore it and put the change in a new patch' % path)
        elif status == 'D' and kind == SCHEMA and name in landed:
            problems.append('%s: a landed patch was deleted: restore it (an applied revision needs its file)' % path)
        if kind == SCHEMA and status in ('A', 'R', 'C') and name not in landed:
            new_patches.append(name)
            if newest_landed is not None and revision <= newest_landed:
                problems.append('%s: numbered before the newest landed patch patch-%s.sql: number it after it '
                                '(deploys apply patches in revision order)' % (path, format_revision(newest_landed)))
    schema, code, neutral = (list(dict.fromkeys(x)) for x in (schema, code, neutral))
    if schema and code:
        problems.insert(0, '%s mixes schema and code: schema %s%s, code %s%s: split it into a schema-only change '
                           '(landed and deployed first) and a code-only change'
                        % (range_text, schema[0], _more(schema), code[0], _more(code)))
        kind = 'mixed'
    elif schema:
        kind = 'schema-only'
    elif code:
        kind = 'code-only'
    elif neutral:
        kind = 'neutral-only'
    else:
        kind = 'empty'
    passed = not problems
    if passed:
        msg = '%s is %s (%d schema, %d code, %d neutral file(s))' % (range_text, kind, len(schema), len(code),
                                                                     len(neutral))
    else:
        msg = 'change rule refused %s: %s' % (range_text, problems[0] + (
            ' (and %d more problem(s))' % (len(problems) - 1) if len(problems) > 1 else ''))
    return {'passed': passed, 'kind': kind, 'files': files, 'schema': schema, 'code': code, 'neutral': neutral,
            'new_patches': new_patches, 'problems': problems, 'msg': msg}


# -- git -------------------------------------------------------------------------------

def run_git(repo, *args, **kwargs):
    """stdout of one git command (bytes with raw=True); ChangeRuleError with
    git's own first line when it fails."""
    raw = kwargs.pop('raw', False)
    try:
        proc = subprocess.run(['git', '-C', repo] + list(args), capture_output=True, timeout=GIT_TIMEOUT_SECONDS,
                              check=False)
    except FileNotFoundError:
        raise ChangeRuleError('git is not installed on the host that runs the change rule: install git')
    except subprocess.TimeoutExpired:
        raise ChangeRuleError('git %s in %s took over %ds' % (args[0], repo, GIT_TIMEOUT_SECONDS))
    if proc.returncode != 0:
        text = proc.stderr.decode('utf-8', 'replace').strip().splitlines()
        raise ChangeRuleError('git %s failed in %s: %s' % (args[0], repo, text[0] if text else 'rc %d' % proc.returncode))
    return proc.stdout if raw else proc.stdout.decode('utf-8', 'replace')


def resolve_commit(repo, rev):
    """The full hash of ``rev``; ChangeRuleError naming it when it is no commit here."""
    try:
        return run_git(repo, 'rev-parse', '--verify', '--quiet', '--end-of-options', '%s^{commit}' % rev).strip()
    except ChangeRuleError:
        raise ChangeRuleError('%r is not a commit of the repository %s: fetch it first (CI checkouts are often '
                              'shallow: fetch the target branch, e.g. actions/checkout with fetch-depth: 0)'
                              % (rev, repo))


def open_repository(repo):
    """The top of the work tree ``repo`` is in; ChangeRuleError when it is not one."""
    if not os.path.isdir(repo):
        raise ChangeRuleError('%s: no such directory (the application repository to check)' % repo)
    try:
        return run_git(repo, 'rev-parse', '--show-toplevel').strip()
    except ChangeRuleError:
        raise ChangeRuleError('%s is not a git repository (or git cannot read it): point --repo (the '
                              'repo option) at the application\'s checkout' % repo)


def parse_name_status(data):
    """``git diff --name-status -z`` output (bytes) as change dicts."""
    fields = data.decode('utf-8', 'surrogateescape').split('\0')
    changes, index = [], 0
    while index < len(fields) and fields[index]:
        status = fields[index]
        if status[:1] in ('R', 'C'):
            changes.append({'status': status[:1], 'old_path': fields[index + 1], 'path': fields[index + 2]})
            index += 3
        else:
            changes.append({'status': status[:1], 'path': fields[index + 1], 'old_path': None})
            index += 2
    return changes


def git_changes(repo, base, head, staged=False):
    """(changes, {'base', 'head', 'merge_base'} hashes) of ``head`` since its
    merge base with ``base``; with ``staged`` the index's changes on top."""
    base_commit, head_commit = resolve_commit(repo, base), resolve_commit(repo, head)
    try:
        merge_base = run_git(repo, 'merge-base', base_commit, head_commit).strip()
    except ChangeRuleError:
        raise ChangeRuleError('%s and %s have no common history in %s: is base the target branch of this change?'
                              % (base, head, repo))
    diff = run_git(repo, 'diff', '--name-status', '-z', '-M', '--no-ext-diff', '--no-textconv', merge_base,
                   head_commit, raw=True)
    changes = parse_name_status(diff)
    if staged:
        by_path = dict((c['path'], c) for c in changes)
        staged_diff = run_git(repo, 'diff', '--cached', '--name-status', '-z', '-M', '--no-ext-diff', raw=True)
        for change in parse_name_status(staged_diff):
            by_path[change['path']] = change
        changes = list(by_path.values())
    return changes, {'base': base_commit, 'head': head_commit, 'merge_base': merge_base}


def tree_has(repo, commit, path):
    try:
        run_git(repo, 'cat-file', '-e', '%s:%s' % (commit, path))
        return True
    except ChangeRuleError:
        return False


def landed_patches(repo, commit, patch_dir):
    """The patch file names in ``patch_dir`` at ``commit``."""
    names = run_git(repo, 'ls-tree', '-z', '--name-only', commit, '--', patch_dir + '/').split('\0')
    return [os.path.basename(n) for n in names if n and parse_name_safe(os.path.basename(n))]


def parse_name_safe(name):
    try:
        return parse_patch_name(name) is not None
    except PatchSetError:
        return False


def check(repo, base, head, patch_dir, neutral_globs=DEFAULT_NEUTRAL_GLOBS, staged=False):
    """The change rule on a repository: ``decide`` on ``git_changes``, with the
    base's patches as the landed ones. Adds 'range' and 'commits' to the verdict."""
    top = open_repository(repo)
    patch_dir = normalize_dir(os.path.relpath(patch_dir, top) if os.path.isabs(patch_dir) else patch_dir)
    if not patch_dir or patch_dir.startswith('..'):
        raise ChangeRuleError('patch_dir %r is not a directory inside the repository %s: give it relative to the '
                              'repository root' % (patch_dir, top))
    changes, commits = git_changes(top, base, head, staged=staged)
    if not (tree_has(top, commits['base'], patch_dir) or tree_has(top, commits['head'], patch_dir)):
        raise ChangeRuleError('the repository %s has no patch directory %s/ at %s nor at %s: set patch_dir '
                              '(fastdowntime_patch_dir) relative to the repository root' % (top, patch_dir, base, head))
    range_text = '%s..%s' % (base, head) + (' (with staged changes)' if staged else '')
    result = decide(changes, patch_dir, landed_patches(top, commits['base'], patch_dir), neutral_globs,
                    range_text=range_text)
    result.update(range=range_text, commits=commits, patch_dir=patch_dir, repository=top)
    return result


# -- the command line (CI without Ansible: bin/fastdowntime-change-rule) ------------------

def cli(argv, out, env=None):
    """``fastdowntime-change-rule --patch-dir DIR [--base REV] [--head REV]
    [--repo DIR] [--neutral GLOB]... [--no-default-neutral] [--staged] [--json]``.
    Prints the verdict in one line (every problem on its own line after it);
    returns the exit status: 0 kept, 1 broken, 2 cannot check. A pre-push
    hook's PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF give the default range."""
    import argparse
    import json
    env = os.environ if env is None else env

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise ChangeRuleError('usage: %s' % message)

    parser = Parser(prog='fastdowntime-change-rule',
                    description='A change carries schema patches or code, never both.')
    parser.add_argument('--repo', default='.', metavar='DIR',
                        help="the application's git checkout to check (default: the current directory)")
    parser.add_argument('--base', default=env.get('PRE_COMMIT_FROM_REF') or env.get('FASTDOWNTIME_BASE')
                        or 'origin/main', metavar='REV',
                        help='the revision the change starts from (default: $PRE_COMMIT_FROM_REF, '
                             '$FASTDOWNTIME_BASE, else origin/main)')
    parser.add_argument('--head', default=env.get('PRE_COMMIT_TO_REF') or 'HEAD', metavar='REV',
                        help='the revision the change ends at (default: $PRE_COMMIT_TO_REF, else HEAD)')
    parser.add_argument('--patch-dir', required=True, metavar='DIR',
                        help='the schema patches\' directory, relative to the repository (e.g. database/schema)')
    parser.add_argument('--neutral', action='append', default=[], metavar='GLOB',
                        help='a path glob that is neither schema nor code (repeatable; added to the defaults: '
                             'docs, tests, changelogs...)')
    parser.add_argument('--no-default-neutral', action='store_true',
                        help='only the --neutral globs given are neutral')
    parser.add_argument('--staged', action='store_true',
                        help='check what is staged for the next commit instead of --base..--head')
    parser.add_argument('--json', action='store_true', help='print the verdict as JSON')
    try:
        args = parser.parse_args(argv)
        globs = tuple(args.neutral) + (() if args.no_default_neutral else DEFAULT_NEUTRAL_GLOBS)
        result = check(args.repo, args.base, args.head, args.patch_dir, globs, staged=args.staged)
    except ChangeRuleError as exc:
        out.write('change rule: %s\n' % exc)
        return 2
    if args.json:
        out.write(json.dumps(result, indent=2, sort_keys=True) + '\n')
    else:
        out.write(result['msg'] + '\n')
        for problem in result['problems'][1:]:
            out.write('  also: %s\n' % problem)
    return 0 if result['passed'] else 1

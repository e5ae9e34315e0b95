# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lockstep between databases and app servers, from what each side reports.

*Expand before use*: code may be rolled out only once every database (the
primary and every standby) has the schema revision it needs. *Contract after
disuse*: a patch that drops or renames something (the lint's contract
findings) is deployed only once no running app server uses it.

The app's side is one JSON document, the *fastdowntime manifest*::

    {"requires_revision": "2300-03-0", "uses": ["fdt_item", "fdt_item.body"]}

- ``requires_revision``: the newest patch revision (``MMMM-mm-p``) the code
  needs, or null;
- ``uses``: the tables (``table``) and columns (``table.column``, or
  ``table.*`` for every column) the code reads or writes; names as in SQL,
  ``public.`` optional, case-insensitive.

The release being rolled out carries it as a file (its path on each app
server: ``fastdowntime_app_manifest_path``); the running code serves the one
it started with in its health response under the key ``fastdowntime``.

Pure: ``parse_manifest``, ``decide_expand``, ``contract_object``,
``decide_contract``; ``fetch_running_manifest`` asks a health URL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible_collections.fastdowntime.postgresql.plugins.module_utils.patchset import format_revision

HEALTH_KEY = 'fastdowntime'
HEALTH_TIMEOUT_SECONDS = 5
_REVISION_RE = re.compile(r'^(\d{4})-(\d{2})-(\d)$')
CONVENTION = ('a JSON manifest {"requires_revision": "MMMM-mm-p" or null, "uses": ["table", "table.column"]}, '
              'see README "The process"')


class ManifestError(Exception):
    """A manifest that cannot be read; str() is the one-line reason."""


def parse_revision(text):
    match = _REVISION_RE.match(str(text).strip())
    if not match:
        raise ManifestError('requires_revision %r is not a revision MMMM-mm-p (e.g. 2300-03-0)' % (text,))
    return tuple(int(part) for part in match.groups())


def normalize_name(name):
    """'Public.FDT_Item.Body' -> 'fdt_item.body'."""
    text = str(name).strip().lower()
    return text[len('public.'):] if text.startswith('public.') else text


def parse_manifest(raw):
    """{'requires_revision': (major, minor, patch) or None, 'uses': set of
    names} from JSON text or an already decoded dict; ManifestError."""
    if isinstance(raw, (bytes, str)):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ManifestError('not JSON (%s)' % exc)
    if not isinstance(raw, dict):
        raise ManifestError('not a JSON object')
    unknown = sorted(set(raw) - {'requires_revision', 'uses'})
    if unknown:
        raise ManifestError('unknown key(s) %s (known: requires_revision, uses)' % ', '.join(unknown))
    required = raw.get('requires_revision')
    uses = raw.get('uses', None)
    if uses is not None and (not isinstance(uses, list) or not all(isinstance(u, str) for u in uses)):
        raise ManifestError('uses must be a list of table or table.column names')
    return {'requires_revision': parse_revision(required) if required not in (None, '') else None,
            'uses': None if uses is None else set(normalize_name(u) for u in uses)}


# -- expand before use -----------------------------------------------------------

def decide_expand(apps, databases):
    """Can the code be rolled out?

    ``apps``: [{'name', 'source' (where the manifest came from), 'manifest'
    (parse_manifest result) or 'error' (one line: it reports nothing)}].
    ``databases``: [{'label', 'applied': set of revisions} or {'label',
    'error'}]. Returns {'passed', 'problems' (one line each), 'apps'
    [{'name', 'requires_revision', 'missing_on'}], 'msg'}.
    """
    problems, rows = [], []
    for app in apps:
        if app.get('error'):
            problems.append('%s reports nothing: %s: ship %s in the release (or unset fastdowntime_app_manifest_path '
                            'to roll out without the lockstep check)' % (app['name'], app['error'], CONVENTION))
            rows.append({'name': app['name'], 'requires_revision': None, 'missing_on': None, 'error': app['error']})
            continue
        required = app['manifest']['requires_revision']
        missing = []
        if required is not None:
            for database in databases:
                if database.get('error') or required not in database['applied']:
                    missing.append(database)
        rows.append({'name': app['name'], 'requires_revision': format_revision(required) if required else None,
                     'missing_on': [d['label'] for d in missing]})
        for database in missing:
            if database.get('error'):
                problems.append('%s requires schema revision %s, and %s cannot tell: %s'
                                % (app['name'], format_revision(required), database['label'], database['error']))
            else:
                newest = max(database['applied']) if database['applied'] else None
                problems.append('%s requires schema revision %s (%s), which %s lacks (newest there: %s): deploy the '
                                'schema first (the fastdowntime playbook without --tags restart), then roll out '
                                'this code' % (app['name'], format_revision(required), app.get('source') or 'its '
                                               'manifest', database['label'],
                                               format_revision(newest) if newest else 'none'))
    passed = not problems
    if passed:
        needs = sorted(set(r['requires_revision'] for r in rows if r['requires_revision']))
        msg = 'lockstep: every database has the schema the code needs (%s)' % (
            ', '.join(needs) if needs else 'no revision required')
    else:
        msg = 'lockstep refused the code rollout: %s%s' % (
            problems[0], ' (and %d more)' % (len(problems) - 1) if len(problems) > 1 else '')
    return {'passed': passed, 'problems': problems, 'apps': rows, 'msg': msg}


# -- contract after disuse -----------------------------------------------------------

def contract_object(finding):
    """(table, column or None) a contract finding (lint) takes away,
    normalized; None when the lint could not name it."""
    table = finding.get('table')
    if not table:
        return None
    table = normalize_name(table)
    detail = finding.get('detail') or ''
    if finding['rule'] == 'drop-column' and detail:
        return table, normalize_name(detail)
    if finding['rule'] == 'rename' and ' -> ' in detail:
        old = normalize_name(detail.split(' -> ', 1)[0])
        return (table, None) if old == table else (table, old)
    return table, None


def object_text(obj):
    return obj[0] if obj[1] is None else '%s.%s' % obj


def uses_object(uses, obj):
    """Does a ``uses`` set cover ``obj`` (table, column or None)? A column is
    used when listed or its table is listed as ``table.*``; a table when it or
    any of its columns is listed."""
    table, column = obj
    if column is not None:
        return '%s.%s' % (table, column) in uses or table + '.*' in uses
    return table in uses or any(u.startswith(table + '.') for u in uses)


def decide_contract(finding, reports):
    """Is every app server past using what ``finding`` (a lint contract
    finding) takes away?

    ``reports``: [{'name', 'manifest' or 'error'}] of the running code (the
    health endpoint). Returns (disused, text): disused True when every app
    server reports a ``uses`` list without the object; text says who still
    uses it or reports nothing (one line). No app server: (False, reason).
    """
    obj = contract_object(finding)
    if obj is None:
        return False, 'the object it takes away could not be named'
    name = object_text(obj)
    if not reports:
        return False, 'no app server to ask whether %s is still used (fastdowntime_appservers is empty)' % name
    users, silent = [], []
    for report in reports:
        if report.get('error'):
            silent.append('%s (%s)' % (report['name'], report['error']))
        elif report['manifest']['uses'] is None:
            silent.append('%s (its manifest has no uses list)' % report['name'])
        elif uses_object(report['manifest']['uses'], obj):
            users.append(report['name'])
    if not users and not silent:
        return True, 'every app server reports running code that no longer uses %s (%s)' % (
            name, ', '.join(r['name'] for r in reports))
    parts = []
    if users:
        parts.append('running code on %s still uses %s' % (', '.join(users), name))
    if silent:
        parts.append('%s report%s nothing about %s: %s' % (
            ', '.join(s.split(' (')[0] for s in silent), 's' if len(silent) == 1 else '', name, '; '.join(silent)))
    return False, '; '.join(parts)


def fetch_running_manifest(url, key=HEALTH_KEY, timeout=HEALTH_TIMEOUT_SECONDS, opener=None):
    """(manifest, None) from the health response's ``key``, or (None, one-line
    error) when the app answers no such thing."""
    if not url:
        return None, 'no health URL (fastdowntime_app_health_url)'
    if opener is None:
        from ansible.module_utils.urls import open_url as opener
    try:
        with opener(url, timeout=timeout) as response:
            body = json.loads(response.read().decode('utf-8', 'replace'))
    except ValueError:
        return None, '%s did not answer JSON' % url
    except Exception as exc:  # URLError, HTTPError, timeouts, resets: all "it reports nothing"
        return None, '%s: %s' % (url, ' '.join(str(getattr(exc, 'reason', None) or exc).split()))
    if not isinstance(body, dict) or key not in body or body[key] is None:
        return None, '%s has no %r key (%s)' % (url, key, CONVENTION)
    try:
        return parse_manifest(body[key]), None
    except ManifestError as exc:
        return None, '%s: its %r manifest is not valid: %s' % (url, key, exc)

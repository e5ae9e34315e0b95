"""Lockstep decisions (pure): manifests, expand before use, contract after disuse."""

import io
import json
import urllib.error

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import lockstep as ls


def manifest(required=None, uses=()):
    return ls.parse_manifest(json.dumps({'requires_revision': required, 'uses': list(uses)}))


@pytest.mark.parametrize('raw, message', [
    ('{nope', 'not JSON'),
    ('[1]', 'not a JSON object'),
    ('{"requires": "2300-01-0"}', 'unknown key(s) requires (known: requires_revision, uses)'),
    ('{"requires_revision": "2300-1-0"}', "requires_revision '2300-1-0' is not a revision MMMM-mm-p"),
    ('{"uses": "fdt_item"}', 'uses must be a list'),
])
def test_bad_manifest_is_one_line(raw, message):
    with pytest.raises(ls.ManifestError) as info:
        ls.parse_manifest(raw)
    assert message in str(info.value)


def test_manifest_names_are_normalized():
    parsed = manifest('2300-03-0', ['Public.FDT_Item.Body', 'fdt_tag'])
    assert parsed == {'requires_revision': (2300, 3, 0), 'uses': {'fdt_item.body', 'fdt_tag'}}
    assert ls.parse_manifest({}) == {'requires_revision': None, 'uses': None}


DATABASES = [{'label': 'primary (10.0.0.1:5432)', 'applied': {(2300, 1, 0), (2300, 2, 0)}},
             {'label': 'standby1 (10.0.0.2:5432)', 'applied': {(2300, 1, 0)}}]


def test_expand_refuses_code_needing_a_revision_a_standby_lacks():
    verdict = ls.decide_expand([{'name': 'app1', 'source': 'app1:/srv/app/fastdowntime.json',
                                 'manifest': manifest('2300-02-0')}], DATABASES)
    assert not verdict['passed']
    assert verdict['msg'] == (
        'lockstep refused the code rollout: app1 requires schema revision 2300-02-0 (app1:/srv/app/fastdowntime.json), '
        'which standby1 (10.0.0.2:5432) lacks (newest there: 2300-01-0): deploy the schema first (the fastdowntime '
        'playbook without --tags restart), then roll out this code')
    assert verdict['apps'] == [{'name': 'app1', 'requires_revision': '2300-02-0',
                                'missing_on': ['standby1 (10.0.0.2:5432)']}]


def test_expand_passes_when_every_database_has_it_or_nothing_is_required():
    verdict = ls.decide_expand([{'name': 'app1', 'manifest': manifest('2300-01-0')},
                                {'name': 'app2', 'manifest': manifest(None)}], DATABASES)
    assert verdict['passed'] and verdict['msg'] == 'lockstep: every database has the schema the code needs (2300-01-0)'


def test_expand_app_reporting_nothing_and_unreadable_database():
    verdict = ls.decide_expand([{'name': 'app2', 'error': 'file not found'}], DATABASES)
    assert not verdict['passed'] and verdict['msg'].startswith(
        'lockstep refused the code rollout: app2 reports nothing: file not found: ship a JSON manifest')
    verdict = ls.decide_expand([{'name': 'app1', 'manifest': manifest('2300-01-0')}],
                               [{'label': 'standby2', 'error': 'cannot connect'}])
    assert verdict['problems'] == ['app1 requires schema revision 2300-01-0, and standby2 cannot tell: cannot connect']


def lint_finding(rule, table, detail=None):
    return {'rule': rule, 'table': table, 'detail': detail, 'kind': 'contract change'}


@pytest.mark.parametrize('finding, obj', [
    (lint_finding('drop-column', 'public.fdt_item', 'Legacy'), ('fdt_item', 'legacy')),
    (lint_finding('drop-table', 'fdt_old'), ('fdt_old', None)),
    (lint_finding('rename', 'fdt_item', 'body -> text'), ('fdt_item', 'body')),
    (lint_finding('rename', 'fdt_item', 'fdt_item -> fdt_thing'), ('fdt_item', None)),
    (lint_finding('drop-table', None), None),
])
def test_contract_object(finding, obj):
    assert ls.contract_object(finding) == obj


def test_contract_passes_only_when_every_app_no_longer_uses_it():
    drop = lint_finding('drop-column', 'fdt_item', 'legacy')
    still = [{'name': 'app1', 'manifest': manifest(uses=['fdt_item.legacy'])},
             {'name': 'app2', 'manifest': manifest(uses=['fdt_item.*'])}]
    assert ls.decide_contract(drop, still) == (False, 'running code on app1, app2 still uses fdt_item.legacy')
    done = [{'name': 'app1', 'manifest': manifest(uses=['fdt_item.id'])},
            {'name': 'app2', 'manifest': manifest(uses=['fdt_item.body'])}]
    assert ls.decide_contract(drop, done) == (
        True, 'every app server reports running code that no longer uses fdt_item.legacy (app1, app2)')
    silent = [done[0], {'name': 'app2', 'error': 'http://app2/health: timed out'}]
    assert ls.decide_contract(drop, silent) == (
        False, 'app2 reports nothing about fdt_item.legacy: app2 (http://app2/health: timed out)')
    table = lint_finding('drop-table', 'fdt_item')
    assert ls.decide_contract(table, done)[0] is False  # its columns are used
    assert ls.decide_contract(drop, [])[0] is False


class Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fetch_running_manifest():
    body = {'status': 'ok', 'fastdowntime': {'requires_revision': '2300-01-0', 'uses': ['fdt_item.body']}}
    found, error = ls.fetch_running_manifest('http://app/health', opener=lambda url, timeout: Response(
        json.dumps(body).encode()))
    assert error is None and found['uses'] == {'fdt_item.body'}
    found, error = ls.fetch_running_manifest('http://app/health', opener=lambda url, timeout: Response(b'{}'))
    assert found is None and error.startswith("http://app/health has no 'fastdowntime' key")

    def refused(url, timeout):
        raise urllib.error.URLError(ConnectionRefusedError(111, 'Connection refused'))
    assert ls.fetch_running_manifest('http://app/health', opener=refused) == (
        None, 'http://app/health: [Errno 111] Connection refused')

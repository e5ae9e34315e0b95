"""preflight_evidence.preflight_missing: no change to the database without this deploy's pre-flight (pure)."""

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import preflight_evidence as pe

# -- no window without its pre-flight --------------------------------------------------------

PENDING = {'pending_cold': [{'name': 'patch-2300-01-0.sql', 'sha256': 'aa', 'kind': 'cold'},
                            {'name': 'patch-2300-02-0.sql', 'sha256': 'bb', 'kind': 'cold'}]}
PASSED = {'db_name': 'app', 'patch_dir': '/srv/patches', 'pending_cold': PENDING['pending_cold']}
DEPLOY = dict(plan=PENDING, primary='primary (10.0.0.10:5432)', db_name='app', patch_dir='/srv/patches')


def test_the_pre_flight_of_these_patches_in_this_run_opens_the_window():
    assert pe.preflight_missing(PASSED, run_tags=['all'], skip_tags=[], **DEPLOY) == ''
    # The hot patches it saw are applied since; the cold ones are the same: still these patches.
    more = dict(PASSED, pending_cold=PENDING['pending_cold'] + [{'name': 'h', 'sha256': 'cc'}])
    assert pe.preflight_missing(more, run_tags=['preflight', 'outage'], **DEPLOY) == ''


def test_tags_leaving_the_pre_flight_out_refuse_the_window_in_one_line_naming_them_and_the_fix():
    line = pe.preflight_missing({}, run_tags=['outage'], skip_tags=[], **DEPLOY)
    assert line == ('primary (10.0.0.10:5432): the pre-flight did not run in this play (--tags outage left its play '
                    '(tag preflight) out): nothing checked that this window can finish (standbys, sessions, locks, '
                    'budget); refused before any PAUSE, nothing paused or applied: run the whole playbook (no '
                    '--tags/--skip-tags leaving out preflight), or set fastdowntime_preflight_skipped_on_purpose: true '
                    'to open the window without a pre-flight')
    skipped = pe.preflight_missing(None, run_tags=['all'], skip_tags=['preflight'], **DEPLOY)
    assert '(--skip-tags preflight left its play out)' in skipped
    assert '(--tags hot,outage left its play' in pe.preflight_missing({}, run_tags=['hot', 'outage'], **DEPLOY)
    # Every tag, yet no evidence: the outage role was used without the pre-flight before it.
    alone = pe.preflight_missing({}, run_tags=['all'], **DEPLOY)
    assert 'the role fastdowntime.postgresql.preflight must run first' in alone


def test_evidence_of_another_deploy_or_of_other_patches_is_no_evidence_and_nothing_pending_needs_none():
    other = pe.preflight_missing(dict(PASSED, db_name='other'), **DEPLOY)
    assert 'checked database other, patches /srv/patches - not this deploy (database app' in other
    changed = dict(PASSED, pending_cold=[PENDING['pending_cold'][0], dict(PENDING['pending_cold'][1], sha256='old')])
    assert 'did not check patch-2300-02-0.sql (new or changed since)' in pe.preflight_missing(changed, **DEPLOY)
    for nothing_pending in ({'pending_cold': []}, None):
        deploy = dict(DEPLOY)
        deploy['plan'] = nothing_pending
        assert pe.preflight_missing({}, run_tags=['outage'], **deploy) == ''


# -- no hot patch without it either (tryit7 8b: --tags hot applied them with no pre-flight) ------------

HOT = [{'name': 'patch-2300-00-1.sql', 'sha256': 'h1', 'kind': 'hot'}]


def hot(pending=None, step='hot'):
    """preflight_missing's arguments for the hot patches ``pending`` (default HOT) of this deploy."""
    return {'plan': {'pending_hot': HOT if pending is None else pending, 'pending_cold': []}, 'step': step,
            'primary': 'primary (10.0.0.10:5432)', 'db_name': 'app', 'patch_dir': '/srv/patches'}


def test_tags_leaving_the_pre_flight_out_refuse_the_hot_patches_in_one_line():
    line = pe.preflight_missing({}, run_tags=['hot'], skip_tags=[], **hot())
    assert line == ('primary (10.0.0.10:5432): the pre-flight did not run in this play (--tags hot left its play (tag '
                    'preflight) out): nothing checked these hot patches (their statements, the sessions and locks they '
                    'would wait on, the standbys); refused before any was applied, nothing applied: run the whole '
                    'playbook (no --tags/--skip-tags leaving out preflight), or set '
                    'fastdowntime_preflight_skipped_on_purpose: true to apply them without a pre-flight')
    assert pe.preflight_missing(None, run_tags=['all'], skip_tags=['preflight'], **hot()).startswith(
        'primary (10.0.0.10:5432): the pre-flight did not run in this play (--skip-tags preflight left its play out)')


def test_the_pre_flight_that_saw_the_hot_patches_lets_them_run_before_and_after_the_window():
    after_window = [{'name': 'patch-2300-03-1.sql', 'sha256': 'h3'}]
    passed = {'db_name': 'app', 'patch_dir': '/srv/patches', 'pending_cold': PENDING['pending_cold'],
              'pending_hot': HOT, 'post_window_hot': after_window}
    assert pe.preflight_missing(passed, run_tags=['all'], **hot()) == ''
    # after the window its cold patches are applied: the post-window hot patch is pending_hot now
    assert pe.preflight_missing(passed, run_tags=['all'], **hot(after_window)) == ''
    # a hot patch the pre-flight did not see (changed since), or none pending
    changed = hot([{'name': 'patch-2300-00-1.sql', 'sha256': 'edited'}])
    assert 'did not check patch-2300-00-1.sql (new or changed since)' in pe.preflight_missing(passed, **changed)
    assert pe.preflight_missing({}, run_tags=['hot'], **hot([])) == ''
    # the window's own check reads only its cold patches
    assert pe.preflight_missing({}, run_tags=['hot'], **hot(step='window')) == ''

"""The window skeleton without a database: the mode is a strategy, every
failure inside the window goes through the mode's resume, one result builder."""
import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import outage as om
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.pgbouncer_console import ConsoleError
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.schema import SchemaError


class Plan:
    pending_cold = ['patch-1']

    @staticmethod
    def as_dict():
        return {'pending_cold': ['patch-1']}


class Mode:
    """A window mode that records what the skeleton asked of it."""

    def __init__(self, failure=None):
        self.failure = failure
        self.calls = []

    def phases(self, outage, window):
        self.calls.append(('phases', outage.clock.started))
        window.step = 'schema application'
        if self.failure is not None:
            raise self.failure
        window.applied = {'patches': [{'name': 'patch-1'}], 'transaction_ms': 3.0, 'commit_lsn': '0/1',
                          'commit_xid': 7}
        window.step = 'standby replay'

    def resume(self, outage, window):
        self.calls.append(('resume', window.error))
        window.resumed = [{'host': 'b1', 'maxwait_ms': 12.5}, {'host': 'b2', 'maxwait_ms': 30.0}]

    def after(self, outage, window):
        self.calls.append(('after', window.ended_at is not None))

    @staticmethod
    def summary(window):
        return {'extra': True}


def _outage(mode, mode_name='all'):
    outage = om.Outage(primary={'host': 'p', 'name': 'p'}, standbys=[], pgbouncers=[], db_name='app',
                       patch_dir='/nowhere', budget_seconds=10, window_mode=mode_name)
    outage.plan = Plan()
    outage.mode = mode
    outage._finish = lambda result, window: (result, window)
    return outage


def test_the_clock_starts_in_run_and_the_mode_resumes_after_its_phases():
    mode = Mode()
    outage = _outage(mode)
    assert not outage.clock.started
    result, window = outage.run()
    assert mode.calls == [('phases', True), ('resume', None), ('after', True)]
    assert window.step is None and window.error is None and result['changed'] is True
    assert result['outage']['max_client_wait_ms'] == 30.0 and result['outage']['extra'] is True
    assert result['outage']['transaction_ms'] == 3.0 and result['outage']['commit_xid'] == 7
    assert result['resumed'] == window.resumed and 'replay_left_paused' not in result


def test_an_entry_someone_else_resumed_inside_the_window_is_one_warning_and_the_window_stays_done():
    """A RESUME answered "is not paused" (Console.resume_steps' ``not_paused``): each such
    (pgbouncer, entry) named in the result's outage, one line saying what it means and what
    to do; a console that reconnected (its pgbouncer restarted) says so. Nothing else changes:
    the window committed, so it is not an error."""
    mode = Mode()
    outage = _outage(mode)

    def resume(outage_, window):
        window.resumed = [{'host': 'b1 (10.0.0.21:6432)', 'maxwait_ms': 12.5, 'not_paused': ['app']},
                          {'host': 'b2 (10.0.0.22:6432)', 'maxwait_ms': 3.0, 'not_paused': []}]
    mode.resume = resume
    result, window = outage.run()
    assert window.error is None and result['changed'] is True
    others = result['outage']['resumed_by_others']
    assert others == [{'pgbouncer': 'b1 (10.0.0.21:6432)', 'entry': 'app', 'restarted': False}]
    [line] = result['outage']['warnings']
    assert line.startswith("RESUMED BY SOMEONE ELSE inside the window: app on b1 (10.0.0.21:6432) - the deploy's own "
                           'RESUME found it not paused, so clients may have reached the primary inside the window')
    assert 'a standby before its replay' in line and '-> find who resumes pgbouncer during deploys' in line
    assert 'b2' not in line and '\n' not in line

    restarted = om.resumed_by_others([{'host': 'b1', 'not_paused': ['app', 'app_ro'], 'reconnected': True}, {}])
    assert [o['restarted'] for o in restarted] == [True, True]
    assert om.resumed_by_others_line(restarted).startswith(
        'RESUMED BY SOMEONE ELSE inside the window: app, app_ro on b1 (restarted inside the window: its new process '
        "had nothing paused) - the deploy's own RESUME found them not paused")
    # Nobody else resumed anything: no warning at all.
    assert om.resumed_by_others([{'host': 'b1', 'resumed': ['app'], 'not_paused': []}]) == []
    mode.resume = Mode().resume
    assert _outage(mode).run()[0]['outage']['warnings'] == []


def test_a_failure_inside_the_window_is_resumed_and_reported_in_its_phase():
    mode = Mode(failure=SchemaError('primary: boom', lagging=['s1']))
    outage = _outage(mode)
    result, window = outage.run()
    assert mode.calls[1][0] == 'resume' and isinstance(mode.calls[1][1], SchemaError)
    assert window.step == 'schema application' and window.lagging == ['s1']
    assert result['changed'] is False and result['outage']['commit_lsn'] is None


def test_an_unexpected_error_still_resumes_every_pgbouncer_then_goes_on_up():
    mode = Mode(failure=RuntimeError('a bug'))
    outage = _outage(mode)
    with pytest.raises(RuntimeError, match='a bug'):
        outage.run()
    assert [call[0] for call in mode.calls] == ['phases', 'resume']


def test_nothing_pending_opens_no_window():
    mode = Mode()
    outage = _outage(mode)
    outage.plan.pending_cold = []
    result = outage.run()
    assert result['outcome'] == 'nothing to do' and mode.calls == [] and not outage.clock.started


def test_outage_summary_is_one_builder_for_both_modes():
    window = om.Window()
    window.started_at, window.ended_at = 100.0, 100.25
    window.resumed = [{'maxwait_ms': 5.0}, {'maxwait_ms': None}]
    window.replay = {'standbys': [{'name': 's1', 'replay_ms': 1.5}]}
    summary = om.outage_summary(window)
    assert summary['outage_ms'] == 250.0 and summary['max_client_wait_ms'] == 5.0
    assert summary['standby_replay_ms'] == {'s1': 1.5} and summary['patches'] == []
    assert om.outage_summary(window, {'window_mode': 'split'})['window_mode'] == 'split'


def test_split_resume_brings_writes_back_then_replay_then_reads(monkeypatch):
    order = []

    def fake_resume(consoles, clock=None, phase='resume', verify=True):
        assert verify is False  # verified once the outage has ended
        order.append(phase)
        return [{'host': phase, 'maxwait_ms': 1.0 if phase == 'resume_write' else 2.0}]

    def fake_resume_replay(conns, clock=None):
        order.append('replay_resume')
        return [(endpoint, 'connection lost') for endpoint, dummy in conns]

    monkeypatch.setattr(om, 'resume', fake_resume)
    monkeypatch.setattr(om.replication, 'resume_replay', fake_resume_replay)
    outage = _outage(om.SplitWindow(), 'split')
    standby = {'name': 's1', 'host': '10.0.0.11', 'port': 5432}
    outage.standby_conns = [(standby, None)]
    window = om.Window()
    window.applied = {'commit_lsn': '0/1'}
    window.replay_paused = [standby]
    outage.mode.resume(outage, window)
    assert order == ['resume_write', 'replay_resume', 'resume_read']
    # Committed, and this standby's replay could not be resumed: its entries are fenced.
    assert window.lagging == [om.endpoint_label(standby)] and window.replay_errors
    assert [r['host'] for r in window.resumed] == ['resume_write', 'resume_read']
    window.started_at, window.ended_at, window.ended = 1.0, 1.1, 5.0
    window.marks = {'write_start': 4.0, 'write_end': 4.5, 'read_start': 4.75}
    fields = om.SplitWindow.summary(window)
    assert (fields['write_outage_ms'], fields['read_outage_ms']) == (500.0, 250.0)
    assert (fields['max_write_wait_ms'], fields['max_read_wait_ms']) == (1.0, 2.0)
    assert 'REPLAY LEFT PAUSED' in om.SplitWindow.abort_notes(window)[0]


def test_split_writes_are_resumed_once_and_a_failure_is_kept(monkeypatch):
    calls = []

    def failing_resume(consoles, clock=None, phase='resume', verify=True):
        calls.append(phase)
        raise ConsoleError('b1: resume failed')

    monkeypatch.setattr(om, 'resume', failing_resume)
    outage = _outage(om.SplitWindow(), 'split')
    window = om.Window()
    om.SplitWindow.resume_writes(outage, window)
    om.SplitWindow.resume_writes(outage, window)
    assert calls == ['resume_write'] and 'resume failed' in str(window.write_error)


def test_the_primarys_replication_view_is_read_after_the_window_as_a_report(monkeypatch):
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication
    identities = [replication.standby_identity({'name': 'standby1', 'host': '10.0.0.11'},
                                               {'status': 'streaming', 'slot_name': 'standby1'}, {'10.0.0.11'}),
                  replication.standby_identity({'name': 'standby2', 'host': '10.0.0.12'},
                                               {'status': 'streaming', 'slot_name': 'standby2'}, {'10.0.0.12'})]
    replay = {'lsn': '0/5000000', 'standbys': [{'name': 'standby1 (10.0.0.11:5432)', 'replay_ms': 1.0},
                                               {'name': 'standby2 (10.0.0.12:5432)', 'replay_ms': 2.0}]}
    row = {'pid': 7, 'application_name': 'standby1', 'client_addr': '10.0.0.11', 'state': 'streaming',
           'slot_name': 'standby1', 'slot_type': 'physical'}
    views = [[dict(row, replay_lsn='0/4000000', caught_up=False)], [dict(row, replay_lsn='0/5000010', caught_up=True)]]
    monkeypatch.setattr(replication, 'query_rows', lambda conn, sql, params=None: views.pop(0))
    monkeypatch.setattr(replication.time, 'sleep', lambda seconds: None)
    replication.cross_check_replay(None, replay, identities, grace_seconds=5)
    # Read again until the primary's feedback confirms every standby it shows; standby2 it does not show.
    assert views == []
    assert [(s['primary_confirms'], s['primary_replay_lsn'], s['primary_state']) for s in replay['standbys']] == [
        (True, '0/5000010', 'streaming'), (False, None, None)]


def test_the_replay_wait_inside_the_window_does_not_read_the_primary(monkeypatch):
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import BudgetClock

    class Standby:
        async_ = False

        def cursor(self):
            class Cursor:
                def execute(self, sql, params=None):
                    pass

                def fetchone(self):
                    return ('0/5000100', True)
            return Cursor()

    monkeypatch.setattr(replication, 'query_rows', lambda *args: pytest.fail('read inside the window'))
    replay = replication.wait_for_replay(None, [({'name': 's1', 'host': 'h', 'port': 5432}, Standby())], '0/5000000',
                                         BudgetClock(10), xid='7', cross_check=False)
    assert replay['standbys'][0]['replay_lsn'] == '0/5000100' and 'primary_confirms' not in replay['standbys'][0]


def test_the_verification_after_the_resume_ends_the_outage_only_when_it_had_to_act(monkeypatch):
    answers = [[{'host': 'b1', 'resumed': [], 'enabled': []}],
               [{'host': 'b1', 'resumed': ['app'], 'enabled': []}]]
    monkeypatch.setattr(om, 'verify_resumed', lambda consoles, clock, phase: answers.pop(0))
    outage = _outage(Mode())
    window = om.Window()
    window.ended, window.ended_at = 1.0, 2.0
    outage.verify_resumed(window)
    assert (window.ended, window.ended_at) == (1.0, 2.0)
    # An entry found still paused was resumed by the verification: the outage lasted until then.
    outage.verify_resumed(window)
    assert window.ended > 1.0 and window.ended_at > 2.0 and window.resume_error is None


def test_a_failed_verification_joins_the_resume_error(monkeypatch):
    def stuck(consoles, clock, phase):
        raise ConsoleError('resume not verified: b1: app still paused or disabled after RESUME/ENABLE')

    monkeypatch.setattr(om, 'verify_resumed', stuck)
    outage = _outage(Mode())
    window = om.Window()
    window.resume_error = ConsoleError('resume failed: b2: gone')
    outage.verify_resumed(window)
    assert str(window.resume_error) == ('resume failed: b2: gone; resume not verified: b1: app still paused or '
                                        'disabled after RESUME/ENABLE')


def test_a_standby_lost_just_before_the_window_is_named_with_its_fix(monkeypatch):
    def refused(endpoint, **kwargs):
        raise om.ConnectError('standby2 (10.0.0.12:5432): connection refused: the host is up but nothing listens on '
                              'that port - is the server running, on that port?', kind='refused')
    monkeypatch.setattr(om, 'connect', refused)
    with pytest.raises(om.OutageError) as caught:
        om.Outage._connect_standby({'name': 'standby2', 'host': '10.0.0.12', 'port': 5432})
    assert str(caught.value).endswith(
        '-> start the server on standby2 (10.0.0.12:5432), or fix the port in the inventory (fastdowntime_pg_* '
        'variables) (or remove it from fastdowntime_standbys); nothing paused, nothing applied')


class BusyMode(Mode):
    """A mode whose phases compute for a while (the controller's own work) and
    whose resume waits without computing (what the hosts take)."""

    def phases(self, outage, window):
        Mode.phases(self, outage, window)
        deadline = om.time.process_time() + 0.03
        while om.time.process_time() < deadline:
            pass

    def resume(self, outage, window):
        Mode.resume(self, outage, window)
        om.time.sleep(0.05)


def test_the_controllers_cpu_inside_the_outage_is_reported_apart_from_the_wait():
    result, window = _outage(BusyMode()).run()
    outage = result['outage']
    assert window.cpu_started is not None and window.cpu_ended >= window.cpu_started
    assert 30.0 <= outage['controller_cpu_ms'] < outage['outage_ms']
    assert outage['outage_ms'] >= 80.0  # the 50 ms the resume waited counts in the outage, not in the CPU


def test_a_summary_without_cpu_readings_says_none_rather_than_zero():
    window = om.Window()
    window.started_at, window.ended_at = 100.0, 100.25
    assert om.outage_summary(window)['controller_cpu_ms'] is None


def test_the_window_ends_when_the_last_resume_was_answered_not_when_the_bookkeeping_after_it_is_done():
    window = om.Window()
    # Two pgbouncers' RESUMEs answered at 10.002 and 10.005 s (monotonic) and 3.1 / 3.2 s of CPU: the clients
    # flow from then on; what the controller reads after (SHOW POOLS, its records) is not outage.
    window.resumed = [{'host': 'b1', 'answered_at': 10.002, 'answered_cpu': 3.1},
                      {'host': 'b2', 'answered_at': 10.005, 'answered_cpu': 3.2}]
    window.end()
    assert (window.ended, window.cpu_ended) == (10.005, 3.2)
    # A resume that failed, or a fix the verification had to make: the outage ends now.
    window.resume_error = ConsoleError('b2: RESUME failed')
    window.end()
    assert window.ended > 10.005 and window.cpu_ended != 3.2
    window.resume_error = None
    window.end(now=True)
    assert window.ended > 10.005
    # Nothing resumed (a drain that failed before any PAUSE answered): now.
    window.resumed = []
    window.end()
    assert window.ended > 10.005 and window.ended_at is not None


def test_the_window_ignores_the_signals_ansible_sends_on_and_restores_the_handlers_after():
    """Ctrl-C / kill of ansible-playbook reach the module (Ansible sends them on to its workers'
    process groups): inside signals_deferred they are ignored, the window ends as planned; the
    handlers in place before come back after it, also when the window raised."""
    import os
    import signal

    seen = []
    term_before = signal.getsignal(signal.SIGTERM)
    before = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(RuntimeError):
            with om.signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
                raise RuntimeError('the window failed')
        assert seen == []
        os.kill(os.getpid(), signal.SIGINT)
        assert seen == [signal.SIGINT]
        assert signal.getsignal(signal.SIGTERM) == term_before
    finally:
        signal.signal(signal.SIGINT, before)


class RetryConsole:
    """What Outage._restore_login_retry needs of a console: its label and restore_login_retry."""

    def __init__(self, label, left=None):
        self.label, self.left, self.restored = label, left, False
        self.login_retry_lowered_from = '15'

    def restore_login_retry(self):
        if self.left:
            raise ConsoleError('%s: server_login_retry left at 0 (%s): run "SET server_login_retry = 15" on its '
                               'console (or RELOAD it)' % (self.label, self.left))
        self.restored = True
        self.login_retry_lowered_from = None
        return '15'


def test_server_login_retry_is_set_back_after_the_window_and_a_failure_is_a_warning():
    outage = _outage(Mode())
    outage.consoles = [RetryConsole('pgb1'), RetryConsole('pgb2', left='connection lost')]
    outage.login_retry_lowered = {'pgb1': '15', 'pgb2': '15'}
    result = {'outage': {'warnings': []}}
    outage._restore_login_retry(result)
    assert outage.consoles[0].restored
    assert result['server_login_retry']['restored'] == {'pgb1': '15'}
    assert result['server_login_retry']['lowered_to'] == '0'
    assert result['outage']['warnings'] == result['server_login_retry']['not_restored']
    assert result['outage']['warnings'][0].startswith('pgb2: server_login_retry left at 0 (connection lost)')
    # Nothing lowered (check mode, nothing pending, a pgbouncer at 0 already): nothing said.
    quiet = _outage(Mode())
    quiet.login_retry_lowered = {}
    result = {}
    quiet._restore_login_retry(result)
    assert result == {}


def test_a_record_after_the_window_that_could_not_be_written_is_one_warning_naming_primary_cause_and_fix(
        monkeypatch):
    """tryit9 6a: the deploy-log row (and the fence records, the replay-pause markers' removal) not
    written was in the module result only; now also one line in the outage's warnings (the timeline
    prints them once, the report keeps them) - never a failed deploy."""
    import psycopg2
    outage = om.Outage(primary={'host': '10.0.0.10', 'port': 5432, 'name': 'primary'}, standbys=[], pgbouncers=[],
                       db_name='app', patch_dir='/nowhere', budget_seconds=10)
    result = {'deploy_id': 'fdt-1', 'outage': {'warnings': []}}

    def refuse(*args, **kwargs):
        raise om.DeployLogError('10.0.0.10:5432: cannot write the deploy log fastdowntime.deploy_log: permission '
                                'denied for table deploy_log (SQLSTATE 42501)')
    monkeypatch.setattr(om, 'write_deploy_log', refuse)
    outage._log(result)
    assert result['deploy_log'] == result['outage']['deploy_log'] == (
        'not written: cannot write the deploy log fastdowntime.deploy_log: permission denied for table deploy_log '
        '(SQLSTATE 42501)')
    [line] = result['outage']['warnings']
    assert line == ('deploy log row not written on primary (10.0.0.10:5432): cannot write the deploy log '
                    'fastdowntime.deploy_log: permission denied for table deploy_log (SQLSTATE 42501) -> this deploy '
                    'is missing from the log (cycle_time, the audit); its report.json holds the run: fix that on the '
                    'primary before the next deploy')

    def fail(*args, **kwargs):
        raise psycopg2.OperationalError('server closed the connection unexpectedly')
    monkeypatch.setattr(om.replication, 'clear_fences', fail)
    window = om.Window()
    window.disabled = [('b1 (10.0.0.21:6432)', 'app_ro')]
    outage._record_fences(result, window)
    assert result['fences_recorded'] == 'not written: server closed the connection unexpectedly'
    assert result['outage']['warnings'][1] == (
        'fence records not written (fastdowntime.fenced_entry) on primary (10.0.0.10:5432): server closed the '
        'connection unexpectedly -> no later deploy ENABLEs app_ro on b1 (10.0.0.21:6432): ENABLE them by hand once '
        'their standby has replayed this commit')
    monkeypatch.setattr(om.replication, 'clear_pauses', fail)
    assert str(outage.clear_pause_marks(set())) == 'server closed the connection unexpectedly'


def test_a_replay_cross_check_not_read_is_one_warning_naming_the_standbys(monkeypatch):
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils import replication
    from ansible_collections.fastdowntime.postgresql.plugins.module_utils.postgres import psycopg2

    def lost(conn, sql, params=None):
        raise psycopg2.OperationalError('server closed the connection unexpectedly')

    monkeypatch.setattr(replication, 'query_rows', lost)
    replay = {'lsn': '0/5000000', 'standbys': [{'name': 'standby1 (10.0.0.11:5432)', 'replay_ms': 1.0},
                                               {'name': 'standby2 (10.0.0.12:5432)', 'replay_ms': 2.0}]}
    replication.cross_check_replay(None, replay, [], grace_seconds=5, label='primary (10.0.0.10:5432)')
    assert [s['primary_confirms'] for s in replay['standbys']] == [None, None]
    assert replay['cross_check_error'] == 'server closed the connection unexpectedly'
    [line] = replay['warnings']
    assert line.startswith('replay cross-check not read on primary (10.0.0.10:5432): server closed the connection '
                           'unexpectedly -> the primary\'s own view (pg_stat_replication) of standby1 (10.0.0.11:5432), '
                           'standby2 (10.0.0.12:5432) is unknown') and 'nothing is lost' in line
    window = om.Window()
    window.started_at = window.ended_at = 1.0
    window.replay = replay
    summary = om.outage_summary(window)
    assert summary['warnings'] == [line] and summary['cross_check_error'] == replay['cross_check_error']
    assert summary['primary_confirms'] == {'standby1 (10.0.0.11:5432)': None, 'standby2 (10.0.0.12:5432)': None}

"""The change rule as CI runs it through Ansible: the playbook by its FQCN, on real git repositories."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit', 'plugins', 'module_utils'))

from test_changerule import PATCH_DIR, Repo  # noqa: E402  (the unit tests' repository builder)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def change_rule_playbook(repo, verbose=True, **extra):
    """ansible-playbook fastdowntime.postgresql.change_rule on ``repo`` (the checkout's ansible.cfg: the
    timeline callback; ``verbose``: -v, the default callback's task results)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO_ROOT, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO_ROOT, '.collections'), ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_INVENTORY_UNPARSED_WARNING='false')
    extra_vars = dict({'fastdowntime_change_repo': repo.path, 'fastdowntime_change_base': 'main',
                       'fastdowntime_change_patch_dir': PATCH_DIR}, **extra)
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                           'fastdowntime.postgresql.change_rule', '-e', json.dumps(extra_vars)] + (['-v'] if verbose else []),
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def run_change_rule(repo, **extra):
    proc = change_rule_playbook(repo, **extra)
    # The default callback prints the task's result as JSON after '=> ' (after the variables check's tasks).
    text = proc.stdout[proc.stdout.index('[localhost]', proc.stdout.index('Check the change is schema-only')):]
    start = text.index('=> ') + 3
    result, dummy = json.JSONDecoder().raw_decode(text[start:])
    # A CI check is no deploy: the timeline callback stays silent and keeps the last deploy's report.
    assert 'FASTDOWNTIME TIMELINE' not in proc.stdout and '[timeline]' not in proc.stdout
    return proc.returncode, result


def test_playbook_by_fqcn_passes_a_schema_only_change_and_refuses_a_mixed_one(tmp_path):
    repo = Repo(tmp_path / 'app')
    repo.branch('change')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'ALTER TABLE t1 ADD COLUMN c int;\n')
    repo.commit('schema')
    rc, result = run_change_rule(repo)
    assert rc == 0, result
    assert result['kind'] == 'schema-only' and result['new_patches'] == ['patch-2300-03-0.sql']

    repo.write('app/models.py', 'MODELS = 2\n')
    repo.commit('code too')
    rc, result = run_change_rule(repo)
    assert rc == 2
    assert result['msg'].startswith('change rule refused main..HEAD: main..HEAD mixes schema and code: schema '
                                    'database/schema/patch-2300-03-0.sql, code app/models.py')


def test_playbook_bad_range_is_one_line(tmp_path):
    repo = Repo(tmp_path / 'app')
    rc, result = run_change_rule(repo, fastdowntime_change_base='origin/nope')
    assert rc == 2
    assert result['msg'].startswith("change rule: 'origin/nope' is not a commit of the repository")
    assert 'Traceback' not in json.dumps(result) and 'exception' not in result


def test_a_misspelled_variable_is_refused_before_the_change_rule_runs(tmp_path):
    """As every playbook of the collection: a fastdowntime_* name it does not know (a misspelled base
    would silently give the default) refuses the run in one line naming it, where it was set and the
    closest known name, before the rule runs; fastdowntime_unknown_variables: warn only warns."""
    repo = Repo(tmp_path / 'app')
    repo.branch('change')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'ALTER TABLE t1 ADD COLUMN c int;\n')
    repo.commit('schema')
    proc = change_rule_playbook(repo, verbose=False, fastdowntime_change_heads='HEAD')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert out.count('fastdowntime_change_heads (set for every host, from -e) is not a variable of '
                     'fastdowntime.postgresql: did you mean fastdowntime_change_head? (fastdowntime_unknown_variables: '
                     'warn only warns about unknown names)') == 1, out
    assert 'Check the change is schema-only or code-only' not in out and 'Traceback' not in out
    rc, result = run_change_rule(repo, fastdowntime_change_heads='HEAD', fastdowntime_unknown_variables='warn')
    assert rc == 0 and result['kind'] == 'schema-only', result

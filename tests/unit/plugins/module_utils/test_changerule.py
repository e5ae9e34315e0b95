"""The change rule on real git repositories built here (git on PATH, no database)."""

import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

from ansible_collections.fastdowntime.postgresql.plugins.module_utils import changerule as cr

REPO_ROOT = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
SCRIPT = os.path.join(REPO_ROOT, 'bin', 'fastdowntime-change-rule')
PATCH_DIR = 'database/schema'


class Repo:
    """A git repository with a main branch holding two landed patches and some code."""

    def __init__(self, path):
        self.path = str(path)
        os.makedirs(self.path)
        self.git('init', '-q', '-b', 'main')
        self.git('config', 'user.email', 'dev@example.com')
        self.git('config', 'user.name', 'Dev')
        self.write('%s/patch-2300-01-0.sql' % PATCH_DIR, 'CREATE TABLE t1 (id int);\n')
        self.write('%s/patch-2300-02-0.sql' % PATCH_DIR, 'CREATE TABLE t2 (id int);\n')
        self.write('%s/README.md' % PATCH_DIR, 'patches\n')
        self.write('app/models.py', 'MODELS = 1\n')
        self.write('README.md', 'app\n')
        self.commit('initial')

    def git(self, *args):
        return subprocess.run(['git', '-C', self.path] + list(args), check=True, capture_output=True,
                              text=True).stdout.strip()

    def write(self, rel, text):
        full = os.path.join(self.path, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'w') as handle:
            handle.write(text)

    def commit(self, message):
        self.git('add', '-A')
        self.git('commit', '-q', '-m', message)
        return self.git('rev-parse', 'HEAD')

    def branch(self, name):
        self.git('checkout', '-q', '-b', name)

    def check(self, base='main', head='HEAD', **kwargs):
        return cr.check(self.path, base, head, PATCH_DIR, **kwargs)


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / 'app')


def test_schema_only_change_passes(repo):
    repo.branch('schema')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'ALTER TABLE t1 ADD COLUMN c int;\n')
    repo.write('docs/schema.md', 'c is new\n')
    repo.commit('add c')
    result = repo.check()
    assert result['passed'], result['problems']
    assert result['kind'] == 'schema-only'
    assert result['schema'] == ['%s/patch-2300-03-0.sql' % PATCH_DIR]
    assert result['neutral'] == ['docs/schema.md']
    assert result['new_patches'] == ['patch-2300-03-0.sql']


def test_code_only_change_passes(repo):
    repo.branch('code')
    repo.write('app/models.py', 'MODELS = 2\n')
    repo.write('tests/test_models.py', 'pass\n')
    repo.commit('code')
    result = repo.check()
    assert result['passed'] and result['kind'] == 'code-only'
    assert result['code'] == ['app/models.py'] and result['neutral'] == ['tests/test_models.py']


def test_mixed_change_fails_naming_a_file_of_each_kind(repo):
    repo.branch('mixed')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'ALTER TABLE t1 ADD COLUMN c int;\n')
    repo.commit('schema')
    repo.write('app/models.py', 'MODELS = 3\n')
    repo.write('app/views.py', 'VIEWS = 1\n')
    repo.commit('code')
    result = repo.check()
    assert not result['passed'] and result['kind'] == 'mixed'
    assert result['msg'] == (
        'change rule refused main..HEAD: main..HEAD mixes schema and code: schema database/schema/patch-2300-03-0.sql, '
        'code app/models.py (and 1 more): split it into a schema-only change (landed and deployed first) and a '
        'code-only change')
    assert '\n' not in result['msg']


def test_renamed_landed_patch_fails(repo):
    repo.branch('rename')
    repo.git('mv', '%s/patch-2300-02-0.sql' % PATCH_DIR, '%s/patch-2300-05-0.sql' % PATCH_DIR)
    repo.commit('renumber')
    result = repo.check()
    assert not result['passed']
    assert 'the landed patch patch-2300-02-0.sql was renamed' in result['problems'][0]
    assert result['files'][0]['status'] == 'R'


def test_edited_landed_patch_fails(repo):
    repo.branch('edit')
    repo.write('%s/patch-2300-01-0.sql' % PATCH_DIR, 'CREATE TABLE t1 (id bigint);\n')
    repo.commit('edit applied patch')
    result = repo.check()
    assert not result['passed'] and result['kind'] == 'schema-only'
    assert result['problems'] == ['database/schema/patch-2300-01-0.sql: a landed patch was edited (databases that '
                                  'applied it keep the old checksum and the deploy refuses it): restore it and put '
                                  'the change in a new patch']


def test_deleted_landed_patch_fails(repo):
    repo.branch('delete')
    repo.git('rm', '-q', '%s/patch-2300-02-0.sql' % PATCH_DIR)
    repo.commit('delete')
    assert 'a landed patch was deleted' in repo.check()['msg']


def test_new_patch_numbered_before_a_patch_landed_since_fails(repo):
    repo.branch('late')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'ALTER TABLE t1 ADD COLUMN c int;\n')
    repo.commit('my patch')
    repo.git('checkout', '-q', 'main')
    repo.write('%s/patch-2300-04-0.sql' % PATCH_DIR, 'ALTER TABLE t2 ADD COLUMN d int;\n')
    repo.commit('someone else landed 04')
    repo.git('checkout', '-q', 'late')
    result = repo.check()
    assert not result['passed']
    assert result['problems'] == ['database/schema/patch-2300-03-0.sql: numbered before the newest landed patch '
                                  'patch-2300-04-0.sql: number it after it (deploys apply patches in revision order)']


def test_merge_commits_from_the_target_do_not_count(repo):
    """A schema branch that merged main (with code changes) back in is still schema-only."""
    repo.branch('schema')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'ALTER TABLE t1 ADD COLUMN c int;\n')
    repo.commit('schema')
    repo.git('checkout', '-q', 'main')
    repo.write('app/models.py', 'MODELS = 4\n')
    repo.commit('code on main')
    repo.git('checkout', '-q', 'schema')
    repo.git('merge', '-q', '--no-edit', 'main')
    result = repo.check()
    assert result['passed'] and result['kind'] == 'schema-only', result
    # The same change landed on main as a merge commit: the first-parent range is schema-only too.
    repo.git('checkout', '-q', 'main')
    before = repo.git('rev-parse', 'HEAD')
    repo.git('merge', '-q', '--no-ff', '--no-edit', 'schema')
    landed = repo.check(base=before, head='HEAD')
    assert landed['passed'] and landed['kind'] == 'schema-only', landed
    # A code branch merged with a schema branch is mixed.
    repo.branch('both')
    repo.write('app/models.py', 'MODELS = 5\n')
    repo.commit('code')
    assert repo.check(base=before)['kind'] == 'mixed'


def test_mistyped_patch_name_fails(repo):
    repo.branch('typo')
    repo.write('%s/patch-2300-3-0.sql' % PATCH_DIR, 'SELECT 1;\n')
    repo.commit('typo')
    result = repo.check()
    assert not result['passed']
    assert 'not a valid patch name' in result['problems'][0]


def test_staged_changes_count(repo):
    repo.branch('staged')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'ALTER TABLE t1 ADD COLUMN c int;\n')
    repo.commit('schema')
    repo.write('app/models.py', 'MODELS = 6\n')
    repo.git('add', 'app/models.py')
    assert repo.check()['passed']
    assert repo.check(staged=True)['kind'] == 'mixed'


@pytest.mark.parametrize('base, expected', [
    ('no-such-branch', "'no-such-branch' is not a commit of the repository"),
    ('0' * 40, "is not a commit of the repository"),
])
def test_bad_range_is_one_line(repo, base, expected):
    with pytest.raises(cr.ChangeRuleError) as info:
        repo.check(base=base)
    assert expected in str(info.value) and '\n' not in str(info.value)


def test_no_patch_dir_is_one_line(repo):
    with pytest.raises(cr.ChangeRuleError) as info:
        cr.check(repo.path, 'main', 'HEAD', 'db/patches')
    assert str(info.value) == ('the repository %s has no patch directory db/patches/ at main nor at HEAD: set '
                               'patch_dir (fastdowntime_patch_dir) relative to the repository root' % repo.path)


def test_not_a_repository_is_one_line(tmp_path):
    with pytest.raises(cr.ChangeRuleError) as info:
        cr.check(str(tmp_path), 'main', 'HEAD', PATCH_DIR)
    assert str(info.value) == ("%s is not a git repository (or git cannot read it): point --repo (the repo option) "
                               "at the application's checkout" % tmp_path)


def test_the_command_line_help_says_what_each_option_is(capsys):
    with pytest.raises(SystemExit) as info:
        cr.cli(['--help'], io.StringIO(), env={})
    assert info.value.code == 0
    shown = ' '.join(capsys.readouterr().out.split()).split('options:', 1)[1]
    for option, words in (('--repo DIR', "the application's git checkout"), ('--base REV', 'starts from'),
                          ('--head REV', 'ends at'), ('--patch-dir DIR', "schema patches' directory"),
                          ('--neutral GLOB', 'neither schema nor code'), ('--staged', 'staged for the next commit'),
                          ('--json', 'as JSON')):
        # Each option is followed by what it is (before the next option's line).
        assert words in shown.split(option + ' ', 1)[1][:120], (option, shown)


def test_absolute_patch_dir_inside_the_repository(repo):
    repo.branch('abs')
    repo.write('app/models.py', 'MODELS = 7\n')
    repo.commit('code')
    result = cr.check(repo.path, 'main', 'HEAD', os.path.join(repo.path, PATCH_DIR))
    assert result['passed'] and result['patch_dir'] == PATCH_DIR


def test_cli_exit_status_and_output(repo):
    repo.branch('mixed')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'SELECT 1;\n')
    repo.write('app/models.py', 'MODELS = 8\n')
    repo.commit('mixed')
    out = io.StringIO()
    assert cr.cli(['--repo', repo.path, '--base', 'main', '--patch-dir', PATCH_DIR], out) == 1
    assert out.getvalue().startswith('change rule refused main..HEAD: main..HEAD mixes schema and code')
    out = io.StringIO()
    assert cr.cli(['--repo', repo.path, '--base', 'nope', '--patch-dir', PATCH_DIR], out) == 2
    assert out.getvalue().count('\n') == 1
    out = io.StringIO()
    assert cr.cli(['--repo', repo.path], out, env={}) == 2
    assert out.getvalue() == 'change rule: usage: the following arguments are required: --patch-dir\n'
    # A pre-push hook's range comes from pre-commit's environment.
    out = io.StringIO()
    env = {'PRE_COMMIT_FROM_REF': 'main', 'PRE_COMMIT_TO_REF': 'main'}
    assert cr.cli(['--repo', repo.path, '--patch-dir', PATCH_DIR, '--json'], out, env=env) == 0
    assert json.loads(out.getvalue())['kind'] == 'empty'


def test_script_runs_without_ansible_on_the_path(repo):
    """bin/fastdowntime-change-rule as CI calls it: system python3, only the checkout."""
    repo.branch('schema')
    repo.write('%s/patch-2300-03-0.sql' % PATCH_DIR, 'SELECT 1;\n')
    repo.commit('schema')
    env = {'PATH': '/usr/bin:/bin', 'HOME': os.environ.get('HOME', '/root')}
    proc = subprocess.run(['/usr/bin/python3', SCRIPT, '--patch-dir', PATCH_DIR, '--base', 'main'], cwd=repo.path,
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == 'main..HEAD is schema-only (1 schema, 0 code, 0 neutral file(s))\n'
    proc = subprocess.run([sys.executable, SCRIPT, '--patch-dir', 'nowhere', '--base', 'main'], cwd=repo.path,
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stderr == ''
    assert proc.stdout.startswith('change rule: the repository') and proc.stdout.count('\n') == 1


def test_decide_is_pure():
    changes = [{'status': 'A', 'path': 'db/patch-1-01-0.sql'}, {'status': 'M', 'path': 'CHANGELOG.md'}]
    result = cr.decide(changes, 'db', landed=['patch-0001-01-0.sql'])
    assert result['passed'] is False  # patch-1-01-0.sql is a mistyped patch name
    changes = [{'status': 'A', 'path': 'db/patch-0001-02-0.sql'}, {'status': 'M', 'path': 'CHANGELOG.md'}]
    result = cr.decide(changes, './db/', landed=['patch-0001-01-0.sql'])
    assert result['passed'] and result['kind'] == 'schema-only' and result['neutral'] == ['CHANGELOG.md']

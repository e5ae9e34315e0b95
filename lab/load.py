"""A constant client load through the lab's pgbouncers (real clients, psycopg2).

Writers run small TPC-B-like transactions (BEGIN; INSERT ... RETURNING id;
COMMIT) and remember every id whose COMMIT was confirmed; readers run a short
read. Each worker keeps its connection, or (``connect_each``) opens a new one
for every transaction, as applications without a pool of their own do. Every
transaction's latency is measured, so the longest one is the longest wait a
client saw. Used by the integration tests, the benchmarks and the soak; not
part of the collection.
"""

import threading
import time

import psycopg2


class Worker(threading.Thread):
    def __init__(self, load, dsn, kind, label):
        threading.Thread.__init__(self, daemon=True, name='load-%s' % label)
        self.load = load
        self.dsn = dsn
        self.kind = kind
        self.label = label
        self.confirmed = []
        self.errors = []
        self.latencies = []
        self.started = []   # time.time() each transaction began (beside latencies)
        self.max_wait = 0.0
        self.max_wait_at = None

    def run(self):
        conn = None
        while not self.load.stopping.is_set():
            began = time.monotonic()
            began_wall = time.time()
            try:
                if conn is None or conn.closed:
                    conn = psycopg2.connect(self.dsn, connect_timeout=10)
                with conn.cursor() as cur:
                    if self.kind == 'write':
                        cur.execute('INSERT INTO fdt_item (body) VALUES (%s) RETURNING id',
                                    ('load-%s' % self.label,))
                        new_id = cur.fetchone()[0]
                        conn.commit()  # the id counts only once COMMIT is confirmed
                        self.confirmed.append(new_id)
                    else:
                        cur.execute('SELECT count(*) FROM (SELECT 1 FROM fdt_item LIMIT 10) s')
                        cur.fetchone()
                        conn.rollback()
            except psycopg2.Error as exc:
                self.errors.append((time.time(), ' '.join(str(exc).split())))
                try:
                    conn.close()
                except Exception:  # the connection is already gone
                    pass
                conn = None
                time.sleep(0.05)
                continue
            if self.load.connect_each:
                conn.close()
            waited = time.monotonic() - began
            self.latencies.append(waited)
            self.started.append(began_wall)
            if waited > self.max_wait:
                self.max_wait = waited
                self.max_wait_at = time.time()
            time.sleep(self.load.pause)
        if conn is not None:
            conn.close()


class ClientLoad:
    """``with ClientLoad(writers=[dsn...], readers=[dsn...]) as load: ...``"""

    def __init__(self, writers=(), readers=(), per_dsn=2, pause=0.01, connect_each=False):
        self.stopping = threading.Event()
        self.pause = pause
        self.connect_each = connect_each
        self.workers = []
        for i, dsn in enumerate(writers):
            for j in range(per_dsn):
                self.workers.append(Worker(self, dsn, 'write', 'w%d.%d' % (i, j)))
        for i, dsn in enumerate(readers):
            for j in range(per_dsn):
                self.workers.append(Worker(self, dsn, 'read', 'r%d.%d' % (i, j)))

    def start(self):
        for worker in self.workers:
            worker.start()
        # Let every worker get its first transaction through before the test acts.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(w.latencies or w.errors for w in self.workers):
            time.sleep(0.02)
        return self

    def stop(self):
        self.stopping.set()
        for worker in self.workers:
            worker.join(timeout=30)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- results ---------------------------------------------------------
    def of_kind(self, kind):
        return [w for w in self.workers if w.kind == kind]

    @property
    def confirmed_ids(self):
        return [i for w in self.of_kind('write') for i in w.confirmed]

    @property
    def errors(self):
        return [(w.label, when, msg) for w in self.workers for when, msg in w.errors]

    def error_texts(self):
        """{message: count} of the client errors (psycopg2's text, whitespace folded)."""
        texts = {}
        for dummy, dummy, msg in self.errors:
            texts[msg] = texts.get(msg, 0) + 1
        return texts

    def max_wait(self, kind=None):
        workers = self.workers if kind is None else self.of_kind(kind)
        return max([w.max_wait for w in workers] or [0.0])

    def max_wait_during(self, began, ended, kind=None):
        """The longest wait (s) of the transactions that overlap [began, ended]
        (time.time() values, e.g. a window's start and end): what the window
        cost the clients, apart from noise elsewhere in the run."""
        workers = self.workers if kind is None else self.of_kind(kind)
        return max([waited for w in workers for start, waited in zip(w.started, w.latencies)
                    if start <= ended and start + waited >= began] or [0.0])

    def transactions(self, kind=None):
        workers = self.workers if kind is None else self.of_kind(kind)
        return sum(len(w.latencies) for w in workers)

    def missing_commits(self, primary_dsn):
        """Confirmed ids that are not in the primary: must always be empty."""
        ids = self.confirmed_ids
        if not ids:
            return []
        conn = psycopg2.connect(primary_dsn)
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT id FROM fdt_item WHERE id = ANY(%s)', (ids,))
                present = {row[0] for row in cur.fetchall()}
        finally:
            conn.close()
        return sorted(set(ids) - present)

    def summary(self):
        return {
            'transactions': self.transactions(),
            'confirmed_commits': len(self.confirmed_ids),
            'errors': len(self.errors),
            'max_wait_ms': round(self.max_wait() * 1000, 1),
            'max_write_wait_ms': round(self.max_wait('write') * 1000, 1),
            'max_read_wait_ms': round(self.max_wait('read') * 1000, 1),
        }

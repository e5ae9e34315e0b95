#!/usr/bin/env python
"""The lab's demo app server (not part of the collection).

It reads and writes through pgbouncer, like a real app server:
  GET  /health  200 {"status": "ok", "revision": "2211-01-0"|null, ...} with the newest
                schema revision it sees on its read-only entry (a standby);
                503 while it cannot reach its database.
  POST /items   inserts a row through the read-write entry, 201 {"id": N}
  GET  /items/N 200 when row N is visible on the read-write entry
The health answer also carries, under "fastdowntime", the fastdowntime manifest of the
release it started from (the collection's lockstep convention, README "The process"):
{"requires_revision": ..., "uses": [...]}, read once at start from FDT_APP_MANIFEST.
Configured by FDT_APP_LISTEN, FDT_APP_DSN, FDT_APP_RO_DSN, FDT_APP_NAME, FDT_APP_MANIFEST.
"""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

LISTEN = os.environ.get('FDT_APP_LISTEN', '127.0.0.1:8080')
DSN = os.environ['FDT_APP_DSN']
RO_DSN = os.environ.get('FDT_APP_RO_DSN', DSN)
NAME = os.environ.get('FDT_APP_NAME', 'app')
STARTED = time.time()


def release_manifest(path):
    """The release's manifest as it was when this process started (None: it reports nothing)."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError, TypeError):
        return None


MANIFEST = release_manifest(os.environ.get('FDT_APP_MANIFEST'))

# The newest revision in the collection's revision table (readable by PUBLIC).
REVISION_TABLE_SQL = "SELECT to_regclass('fastdowntime.schema_revision') IS NOT NULL"
REVISION_SQL = """
SELECT format('%s-%s-%s', major, lpad(minor::text, 2, '0'), patch)
  FROM fastdowntime.schema_revision ORDER BY major DESC, minor DESC, patch DESC LIMIT 1
"""


def newest_revision():
    conn = psycopg2.connect(RO_DSN)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(REVISION_TABLE_SQL)
            if not cur.fetchone()[0]:
                return None
            cur.execute(REVISION_SQL)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def run(dsn, sql, params=None, fetch=True):
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone() if fetch else None
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    server_version = 'fdt-demo-app/1'

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        try:
            if self.path == '/health':
                revision = newest_revision()
                body = {'status': 'ok', 'app': NAME, 'revision': revision, 'started': STARTED, 'pid': os.getpid()}
                if MANIFEST is not None:
                    body['fastdowntime'] = MANIFEST
                self.reply(200, body)
            elif self.path.startswith('/items/'):
                row = run(DSN, 'SELECT id FROM fdt_item WHERE id = %s', (int(self.path[7:]),))
                self.reply(200 if row else 404, {'id': row[0] if row else None})
            else:
                self.reply(404, {'error': 'not found'})
        except psycopg2.Error as exc:
            self.reply(503, {'status': 'database unreachable', 'app': NAME,
                             'error': ' '.join(str(exc).split())})

    def do_POST(self):
        try:
            if self.path == '/items':
                row = run(DSN, 'INSERT INTO fdt_item (body) VALUES (%s) RETURNING id', (NAME,))
                self.reply(201, {'id': row[0]})
            else:
                self.reply(404, {'error': 'not found'})
        except psycopg2.Error as exc:
            self.reply(503, {'status': 'database unreachable', 'error': ' '.join(str(exc).split())})

    def log_message(self, fmt, *args):  # quiet: the lab keeps only errors
        pass


def main():
    host, port = LISTEN.rsplit(':', 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == '__main__':
    main()

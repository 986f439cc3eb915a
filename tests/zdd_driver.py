#!/usr/bin/env python3
"""A blue/green deploy driven the way Marathon-LB's zdd.py drives one, against
Marathon and one or more balancers' stats CSV (`/haproxy?stats;csv`).

It follows zdd.py's protocol: the new colour, port and labels chosen from the
previous deploy of the group; the CSV header read into a namedtuple (so every
column must be a Python identifier); the group's backend `<group>_<HAPROXY_0_PORT>`
and its server rows named `<host>_<port>` (dots as underscores); waiting until every
balancer lists both apps' tasks, the new colour's target count is UP, and some
MAINT server has `scur` and `qcur` at 0; then killing the old colour's tasks that
are MAINT and drained on every balancer (`/v2/tasks/delete?scale=true`), scaling
the new colour by half again (then to its target), and deleting the old app once
all its tasks are drained.

Stricter than zdd.py where a test needs it: running past --max-wait fails (zdd.py
goes on with tasks still draining). `/_haproxy_getpids` is read as zdd.py reads it:
more than one whitespace-separated word, or no answer, is a reload in progress.
Prints a JSON summary on stdout.
"""

import argparse
import csv
import json
import math
import socket
import sys
import time
import urllib.request
from collections import namedtuple
from datetime import datetime


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def marathon(args, method, path, body=None):
    text = call(method, args.marathon + path, body)
    return json.loads(text) if text else {}


def group_of(app):
    return app.get('labels', {}).get('HAPROXY_DEPLOYMENT_GROUP')


def backend_name(app):
    return group_of(app) + '_' + app['labels']['HAPROXY_0_PORT']


def target_of(app):
    labels = app['labels']
    if 'HAPROXY_DEPLOYMENT_TARGET_INSTANCES' in labels:
        return int(labels['HAPROXY_DEPLOYMENT_TARGET_INSTANCES'])
    return app['instances']


def service_port(app):
    mappings = app.get('container', {}).get('docker', {}).get('portMappings', [])
    if mappings and mappings[0].get('servicePort'):
        return int(mappings[0]['servicePort'])
    return int(app['ports'][0])


def set_service_port(app, port):
    mappings = app.get('container', {}).get('docker', {}).get('portMappings', [])
    if mappings:
        mappings[0]['servicePort'] = int(port)
    if 'ports' in app and app['ports']:
        app['ports'][0] = int(port)


def started_at(app):
    return app.get('labels', {}).get('HAPROXY_DEPLOYMENT_STARTED_AT', '0')


def prepare(args, previous, app):
    """The app to post: colour, id, ports and deployment labels as zdd.py sets them."""
    labels = app['labels']
    if previous:
        last = sorted(previous, key=started_at)[-1]
        colour = 'green' if last['labels'].get('HAPROXY_DEPLOYMENT_COLOUR') == 'blue' else 'blue'
        alt = int(labels['HAPROXY_DEPLOYMENT_ALT_PORT'])
        port = alt
        if 'ports' in last and int(last['ports'][0]) == alt:
            port = int(last['labels']['HAPROXY_0_PORT'])
        target = last['instances']
        app['instances'] = min(args.initial_instances, target)
    else:
        colour = 'blue'
        port = service_port(app)
        target = app['instances']
    labels['HAPROXY_DEPLOYMENT_NEW_INSTANCES'] = '0'
    labels['HAPROXY_APP_ID'] = app['id']
    app['id'] = '/' + app['id'].lstrip('/') + '-' + colour
    labels['HAPROXY_0_PORT'] = str(service_port(app))
    set_service_port(app, port)
    labels['HAPROXY_DEPLOYMENT_TARGET_INSTANCES'] = str(target)
    labels['HAPROXY_DEPLOYMENT_COLOUR'] = colour
    labels['HAPROXY_DEPLOYMENT_STARTED_AT'] = datetime.now().isoformat()
    return app


def parse_csv(text):
    """zdd.py's reading: the header (without '# ' and the trailing comma) becomes a
    namedtuple; each row loses its last (empty) field; comment rows are skipped."""
    rows = text.splitlines()
    names = rows.pop(0).lstrip('# ').rstrip(',\n').split(',')
    Row = namedtuple('Row', names)
    return [Row(*r[0:-1]) for r in csv.reader(rows, delimiter=',', quotechar="'")
            if r[0][0] != '#']


def reloading(lb):
    try:
        pids = call('GET', lb + '/_haproxy_getpids').split()
    except OSError:
        return True
    return len(pids) > 1


def listeners(args, app):
    rows = []
    for lb in args.lb:
        rows += parse_csv(call('GET', lb + '/haproxy?stats;csv'))
    name = backend_name(app)
    return [r for r in rows
            if r.pxname == name and r.svname not in ('BACKEND', 'FRONTEND')]


def svnames(app):
    # Tasks reached at their agent's address (BRIDGE): `<host>_<port>` when the agent
    # is named by that address, else `<host>_<ip>_<port>`.
    for task in app['tasks']:
        prefix = task['host'].replace('.', '_')
        ip = socket.gethostbyname(task['host'])
        for port in task['ports']:
            if ip == task['host']:
                yield task['id'], '{}_{}'.format(prefix, port)
            else:
                yield task['id'], '{}_{}_{}'.format(prefix, ip.replace('.', '_'), port)


def drained(row):
    return row.status == 'MAINT' and int(row.scur or 0) == 0 and int(row.qcur or 0) == 0


def tasks_out(old, rows, count, pick):
    """Old tasks whose row is picked on every balancer."""
    chosen = [r for r in rows if pick(r)]
    return [tid for tid, sv in svnames(old)
            if len([r for r in chosen if r.svname == sv]) == count]


def find_tasks_to_kill(args, new, old, summary):
    count = len(args.lb)
    deadline = time.time() + args.max_wait
    while time.time() < deadline:
        time.sleep(args.step_delay)
        if any(reloading(lb) for lb in args.lb):
            continue
        rows = listeners(args, new)
        if len(rows) / count != new['instances'] + old['instances']:
            continue
        if len([r for r in rows if r.status == 'UP']) / count < target_of(new):
            continue
        if not [r for r in rows if drained(r)]:
            continue
        maint = [r.svname for r in rows if r.status == 'MAINT']
        summary['maint_rows_seen'] += len(maint)
        # Only the old colour's tasks are ever put in maintenance (a task killed at
        # an earlier step may still be listed by a balancer that has not caught up).
        summary['old_servers'].update(sv for _, sv in svnames(old))
        summary['maint_not_old'] += [sv for sv in maint if sv not in summary['old_servers']]
        return tasks_out(old, rows, count, drained)
    raise SystemExit('timed out waiting for drained listeners')


def swap(args, new, old, summary):
    while True:
        old = marathon(args, 'GET', '/v2/apps' + old['id'])['app']
        new = marathon(args, 'GET', '/v2/apps' + new['id'])['app']
        if new['deployments']:
            time.sleep(args.step_delay)
            continue
        kill = find_tasks_to_kill(args, new, old, summary)
        if new['instances'] == target_of(new) and len(kill) == old['instances']:
            marathon(args, 'DELETE', '/v2/apps' + old['id'])
            summary['deleted'] = old['id']
            return
        if kill:
            marathon(args, 'POST', '/v2/tasks/delete?scale=true', {'ids': kill})
            summary['killed'] += kill
        if new['instances'] < target_of(new):
            n = math.floor(new['instances'] + (new['instances'] + 1) / 2)
            if n >= old['instances']:
                n = target_of(new)
            marathon(args, 'PUT', '/v2/apps' + new['id'], {'instances': n})
            summary['scaled'].append(n)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--marathon', required=True)
    p.add_argument('--lb', action='append', required=True)
    p.add_argument('--json', required=True)
    p.add_argument('--step-delay', type=float, default=0.2)
    p.add_argument('--max-wait', type=float, default=30)
    p.add_argument('--initial-instances', type=int, default=1)
    args = p.parse_args()
    with open(args.json) as f:
        app = json.load(f)
    for lb in args.lb:
        if call('GET', lb + '/_haproxy_health_check') is None:
            raise SystemExit('no health check on ' + lb)
    apps = marathon(args, 'GET', '/v2/apps')['apps']
    previous = [a for a in apps if group_of(a) == group_of(app)]
    if len(previous) > 1:
        raise SystemExit('a deploy is in progress')
    new = prepare(args, previous, app)
    marathon(args, 'POST', '/v2/apps', new)
    summary = {'colour': new['labels']['HAPROXY_DEPLOYMENT_COLOUR'], 'killed': [],
               'scaled': [], 'deleted': None, 'maint_rows_seen': 0,
               'old_servers': set(), 'maint_not_old': []}
    if previous:
        swap(args, new, previous[0], summary)
    summary['old_servers'] = sorted(summary['old_servers'])
    json.dump(summary, sys.stdout)


if __name__ == '__main__':
    main()

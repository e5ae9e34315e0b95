# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fastdowntime.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pgbouncer dead-man switch: decision logic and its polling loop.

Pure: time, the console and the log are injected, so the unit tests drive it
with a fake clock and fake SHOW DATABASES results. The daemon around it (fork,
pidfile, syslog) is ``watchdog_daemon``; the ``pgbouncer_watchdog`` module arms
and disarms it.

Life of a watchdog: armed -> (sees the deploy's entries paused) countdown ->
either the entries are resumed by the deploy (exit ``resumed``) or the
countdown of budget + grace ends with them still paused (fire: RESUME them,
exit ``fired``). Armed and never paused, it exits after its maximum lifetime.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DEFAULT_GRACE_SECONDS = 10.0
DEFAULT_MAX_LIFETIME_SECONDS = 3600.0
DEFAULT_POLL_SECONDS = 0.2
# After firing, keep retrying a failed RESUME this long before giving up loudly.
FIRE_RETRY_SECONDS = 60.0

# Actions returned by Watchdog.observe()
WAIT = 'wait'
COUNTDOWN_STARTED = 'countdown_started'
FIRE = 'fire'
EXIT_RESUMED = 'resumed'
EXIT_FIRED = 'fired'
EXIT_LIFETIME = 'lifetime'
EXIT_GAVE_UP = 'gave_up'
EXITS = (EXIT_RESUMED, EXIT_FIRED, EXIT_LIFETIME, EXIT_GAVE_UP)


# pgbouncer disconnects a client queued longer than its query_wait_timeout or query_timeout
# (pgbouncer_console.QUEUED_CLIENT_TIMEOUTS), and the outage caps its budget a second
# (pgbouncer_console.TIMEOUT_MARGIN_SECONDS) before the first such timeout. A switch whose budget + grace
# would outlast its own process's timeout fires this long before that timeout instead: after the
# outage's capped budget, before pgbouncer drops the clients. It used to wait budget + grace whatever
# the timeout: with query_wait_timeout = 3 s and the controller killed inside the window, pgbouncer
# disconnected every queued client at 3 s and the switch resumed at 6 s (soak, pgbouncer_low_timeouts).
QUEUE_TIMEOUT_MARGIN_SECONDS = 0.5


def countdown_seconds(budget_seconds, grace_seconds, queue_timeout_seconds=None):
    """How long the entries may stay paused before the switch resumes them: the
    outage budget plus the grace, or less when ``queue_timeout_seconds`` (the
    process's first queued-client timeout, None or 0: none) would cut it:
    QUEUE_TIMEOUT_MARGIN_SECONDS before that timeout."""
    countdown = float(budget_seconds) + float(grace_seconds)
    if queue_timeout_seconds and float(queue_timeout_seconds) > 0:
        countdown = min(countdown, max(float(queue_timeout_seconds) - QUEUE_TIMEOUT_MARGIN_SECONDS, 0.0))
    return countdown


# A deploy's switch is armed before the window's PAUSE: the plan, the arming of
# every pgbouncer host and the task boundaries up to the outage task fit well
# inside this margin.
ARMING_MARGIN_SECONDS = 300.0


def deploy_max_lifetime_seconds(budget_seconds, grace_seconds):
    """The longest a deploy's switch lives (seconds), so that it never outlives
    the deploy: the arming margin, then the whole countdown. The outage
    module's plan returns it (``deploy_switch``) and the outage role arms the
    switch with it."""
    return ARMING_MARGIN_SECONDS + countdown_seconds(budget_seconds, grace_seconds)


def deploy_switch(budget_seconds, grace_seconds):
    """What a deploy arms its switch with (seconds): ``{'countdown_seconds',
    'max_lifetime_seconds'}`` - the outage module's plan returns it."""
    return dict(countdown_seconds=countdown_seconds(budget_seconds, grace_seconds),
                max_lifetime_seconds=deploy_max_lifetime_seconds(budget_seconds, grace_seconds))


class Watchdog:
    """Decides, from successive observations of the entries' pause flags,
    when to start counting, when to fire and when to go away."""

    def __init__(self, entries, budget_seconds, grace_seconds=DEFAULT_GRACE_SECONDS,
                 max_lifetime_seconds=DEFAULT_MAX_LIFETIME_SECONDS, started_at=0.0,
                 fire_retry_seconds=FIRE_RETRY_SECONDS, queue_timeout_seconds=None):
        if not entries:
            raise ValueError('a watchdog needs at least one entry to watch')
        if budget_seconds <= 0 or grace_seconds < 0:
            raise ValueError('budget must be positive and grace not negative')
        self.entries = list(entries)
        self.budget = float(budget_seconds)
        self.grace = float(grace_seconds)
        self.max_lifetime = float(max_lifetime_seconds)
        self.started_at = float(started_at)
        self.fire_retry = float(fire_retry_seconds)
        self.queue_timeout = queue_timeout_seconds  # countdown_seconds' cap
        self.paused_since = None
        self.fired_at = None

    @property
    def deadline(self):
        """When a pause still in place is undone (None before any pause was seen)."""
        if self.paused_since is None:
            return None
        return self.paused_since + self.countdown

    @property
    def countdown(self):
        return countdown_seconds(self.budget, self.grace, self.queue_timeout)

    def countdown_text(self):
        """What the countdown is made of, for the log."""
        text = 'budget %.1f s + grace %.1f s' % (self.budget, self.grace)
        if self.countdown < self.budget + self.grace:
            text += ', cut to %.1f s before this pgbouncer\'s queued-client timeout of %g s' % (
                QUEUE_TIMEOUT_MARGIN_SECONDS, float(self.queue_timeout))
        return text

    def paused(self, flags):
        """The watched entries ``flags`` (entry -> paused) shows paused."""
        return [entry for entry in self.entries if flags and flags.get(entry)]

    def observe(self, now, flags):
        """One observation; ``flags`` is None when the console did not answer."""
        if self.fired_at is not None:
            if flags is not None and not self.paused(flags):
                return EXIT_FIRED
            return EXIT_GAVE_UP if now - self.fired_at >= self.fire_retry else FIRE
        if self.paused_since is not None:
            if flags is not None and not self.paused(flags):
                return EXIT_RESUMED
            if now >= self.deadline:
                # An unreachable console at the deadline is still worth a RESUME attempt.
                self.fired_at = now
                return FIRE
            return WAIT
        if flags is not None and self.paused(flags):
            self.paused_since = now
            return COUNTDOWN_STARTED
        if now - self.started_at >= self.max_lifetime:
            return EXIT_LIFETIME
        return WAIT


def run(dog, read_flags, resume_entries, log, now, sleep, poll_seconds=DEFAULT_POLL_SECONDS):
    """Poll until the watchdog decides to exit; returns the exit action.

    ``read_flags()`` -> {entry: paused} or None when the console is unreachable;
    ``resume_entries(entries)`` sends RESUME (raises on failure);
    ``log(message)`` writes where the operator looks.
    """
    unreachable_logged = False
    while True:
        flags = read_flags()
        if flags is None and not unreachable_logged:
            log('admin console unreachable; still watching')
        unreachable_logged = flags is None
        action = dog.observe(now(), flags)
        if action == COUNTDOWN_STARTED:
            log('entries %s paused: resuming them myself in %.1f s (%s) '
                'unless the deploy resumes them first'
                % (', '.join(dog.paused(flags)), dog.countdown, dog.countdown_text()))
        elif action == FIRE:
            targets = dog.paused(flags) if flags is not None else list(dog.entries)
            try:
                resume_entries(targets)
                log('deadline passed with %s still paused: sent RESUME' % ', '.join(targets))
            except Exception as exc:
                log('deadline passed, RESUME of %s failed: %s; retrying' % (', '.join(targets), exc))
        elif action in EXITS:
            log({
                EXIT_RESUMED: 'entries resumed by the deploy: exiting',
                EXIT_FIRED: 'entries resumed by the watchdog: exiting',
                EXIT_LIFETIME: 'no pause seen within %.0f s: exiting' % dog.max_lifetime,
                EXIT_GAVE_UP: 'could not RESUME within %.0f s: GIVING UP, pgbouncer may still be paused; '
                              'resume it by hand (RESUME on the admin console)' % dog.fire_retry,
            }[action])
            return action
        sleep(poll_seconds)

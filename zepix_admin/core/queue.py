"""Huey's queue classes (settings.HUEY's ``huey_class``), knowing when their consumer stops.

A consumer asked to stop gracefully (Ctrl-C on ``serve``, SIGINT) waits for its running tasks.
A task that waits, a sync waiting to retry a failing plugin, waits on ``consumer_stopping``
instead of sleeping, and ends at once: it held ``serve`` up until it killed the consumer,
10 s later, its run left running. Imported while the apps load: no models here.
"""

import threading

from huey import RedisHuey, SqliteHuey


class _KnowsWhenItsConsumerStops:
    consumer_stopping = threading.Event()  # set by nothing outside a consumer's process

    def create_consumer(self, **options):
        consumer = super().create_consumer(**options)  # type: ignore[misc]
        self.consumer_stopping = consumer.stop_flag
        return consumer


class SqliteQueue(_KnowsWhenItsConsumerStops, SqliteHuey):
    pass


class RedisQueue(_KnowsWhenItsConsumerStops, RedisHuey):
    pass

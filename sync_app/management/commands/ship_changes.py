import argparse
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit

from django.core.management.base import CommandError

from plugins_app import plugins
from sync_app import backup, shipping
from zepix_admin.core.commands import ZepixCommand
from zepix_admin.core.files import work_folder

TIMEOUT_SECONDS = 60
SNAPSHOT_TIMEOUT_SECONDS = 3600  # the central checks and syncs a whole file before it answers


class ShipFailed(Exception):
    pass


class CentralUnreachable(ShipFailed):
    def __init__(self, message: str, *, closed: bool = False):
        super().__init__(message)
        self.closed = closed  # it closed the connection (rather than never answered)


class Command(ZepixCommand):
    help = (
        "On a bot host: send this host's plugins' changes (trades, chains, levels, daily stats, plugin info) "
        "to the central console, from the marks it acknowledged, in compressed batches. Once, or every "
        "SECONDS with --every (an empty batch then tells the central the host is alive)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--central", required=True, help="The central console's address, e.g. https://console:8000")
        parser.add_argument("--token", required=True, help="A plugin-host token made on the central (create_token)")
        parser.add_argument("--plugin", action="append", default=[], help="Only this plugin (once or more)")
        parser.add_argument("--every", type=float, help="Keep shipping, every SECONDS")
        parser.add_argument("--batch-rows", type=int, default=shipping.BATCH_ROWS, help=argparse.SUPPRESS)
        parser.add_argument("--snapshot-rows", type=int, default=shipping.SNAPSHOT_ROWS, help=argparse.SUPPRESS)

    def handle(self, *args, central, token, plugin, every, batch_rows, snapshot_rows, **options):
        address = urlsplit(central)
        if address.scheme not in ("http", "https") or not address.netloc:
            raise CommandError(f"--central must be an http(s) address, not {central!r}.")
        if every is not None and not 0.05 <= every <= 86400:
            raise CommandError("--every must be between 0.05 and 86400 seconds.")
        chosen = [plugins.check_declared(plugin_id) for plugin_id in plugin] or plugins.plugin_ids()
        self.central, self.token, self.every, self.batch_rows = central.rstrip("/"), token, every, batch_rows
        self.snapshot_rows = snapshot_rows
        while True:
            failed = []
            for plugin_id in chosen:
                try:
                    self.ship(plugin_id)
                except ShipFailed as error:
                    failed.append(plugin_id)
                    self.stderr.write(f"{plugin_id}: not shipped: {error}")
            if every is None:
                if failed:
                    raise CommandError(f"Not shipped: {', '.join(failed)}.")
                return
            time.sleep(every)

    def ship(self, plugin_id: str) -> None:
        """Batches until the central holds everything the host had when it read the last one: a
        batch that is not full is the last (one more round trip, empty, was 10-15 ms of a
        1,000-change shipping); at least one (an empty one says the host is alive). The next
        batch is read and compressed while the central applies the one before, from the marks
        the central will hold once it has (a thread: the host's work was a third of each
        batch's round trip). When the central answers other marks, that batch is dropped and
        the next is read from what it holds. When the central holds nothing of this file and it
        is large, the whole file goes first (sync_app.shipping)."""
        path = plugins.database_path(plugin_id)
        held = self.call("GET", plugin_id)
        shipped = batches = 0
        posting = 0.0  # the batches' requests, from sending each to the central's answer
        whole = ""
        if shipping.snapshot_worthwhile(path, held, min_rows=self.snapshot_rows):
            answer = self.send_snapshot(plugin_id, path)
            if answer is not None:
                held = {"marks": answer["marks"], "incarnation": answer["incarnation"]}
                shipped, whole = answer["rows"], " (its whole file first)"
        with ThreadPoolExecutor(max_workers=1) as reader:

            def read(marks: dict, incarnation: str) -> "Future[tuple[dict, bytes]]":
                return reader.submit(self.read_batch, path, marks, incarnation)

            upcoming = read(held["marks"], held["incarnation"])
            while True:
                batch, body = upcoming.result()
                rows = sum(len(table["rows"]) for table in batch["tables"].values())
                if rows:
                    upcoming = read(batch["until"], batch["incarnation"])
                started = time.perf_counter()
                answer = self.call("POST", plugin_id, body)
                posting += time.perf_counter() - started
                if "error" in answer:  # 409: the central holds something else; ship from its marks
                    if answer["marks"] == held["marks"] and answer["incarnation"] == held["incarnation"]:
                        raise ShipFailed(f"the central refuses the batch: {answer['error']}")
                    held = answer
                    upcoming = read(held["marks"], held["incarnation"])
                    continue
                held = {"marks": answer["marks"], "incarnation": batch["incarnation"]}
                shipped, batches = shipped + rows, batches + 1
                if not rows or (not batch["more"] and held["marks"] == batch["until"]):
                    break
                if held["marks"] != batch["until"]:
                    upcoming = read(held["marks"], held["incarnation"])
        if shipped or self.every is None:
            self.stdout.write(
                f"{plugin_id}: shipped {shipped} rows{whole} in {batches} batch(es) ({posting * 1000:.0f} ms); "
                f"the central holds trades up to change {held['marks']['trades']}"
            )

    def send_snapshot(self, plugin_id: str, path) -> dict | None:
        """The whole file; None when the central takes none (it then gets batches)."""
        with work_folder(Path(path).parent, ".snapshot-") as work:
            copy = shipping.snapshot_of(path, Path(work))
            try:
                answer = self.call(  # compressed as it goes, sent in chunks
                    "POST",
                    plugin_id,
                    backup.compressed(copy, level=shipping.SNAPSHOT_ZSTD_LEVEL),
                    endpoint="snapshot",
                    fall_back=(404, 413),
                    timeout=SNAPSHOT_TIMEOUT_SECONDS,
                )
            except CentralUnreachable as error:
                # A central that refuses the file before reading it all (over its
                # ZEPIX_MAX_SNAPSHOT_MB) may close the connection while the host still sends,
                # before the host reads its 409: taken for an unreachable central, the same file
                # was sent again at every run. The batches then find out which it is (a central
                # that went away fails them too). Not after a timeout: it may still be applying it.
                if not error.closed:
                    raise
                answer = {"error": f"it closed the connection while the file was sent ({error})"}
        if "error" in answer:
            self.stderr.write(f"{plugin_id}: the central takes no snapshot ({answer['error']}); shipping in batches")
            return None
        return answer

    def read_batch(self, path, marks: dict, incarnation: str) -> tuple[dict, bytes]:
        batch = shipping.next_batch(path, marks, incarnation, rows_per_table=self.batch_rows)
        return batch, shipping.encode(batch)

    def call(
        self,
        method: str,
        plugin_id: str,
        body=None,
        *,
        endpoint: str = "batches",
        fall_back: tuple[int, ...] = (),
        timeout: float = TIMEOUT_SECONDS,
    ) -> dict:
        """The central's answer; a 409 that carries its marks (or a status in ``fall_back``) is
        an answer with an "error" too, anything else fails the shipping."""
        request = urllib.request.Request(
            f"{self.central}/api/sync/{quote(plugin_id)}/{endpoint}",
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json" if endpoint == "batches" else "application/octet-stream",
                **({"Content-Encoding": "zstd"} if body is not None else {}),
                **({"X-Ship-Every": str(self.every)} if self.every else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            answer = _json(error.read())
            if error.code == 409 and "marks" in answer:
                return answer
            if error.code in fall_back:
                return {"error": answer.get("error", f"{error.code} {error.reason}")}
            raise ShipFailed(f"the central answered {error.code}: {answer.get('error', error.reason)}") from None
        except (urllib.error.URLError, OSError) as error:
            closed = isinstance(getattr(error, "reason", error), ConnectionResetError | BrokenPipeError)
            raise CentralUnreachable(f"the central cannot be reached ({error})", closed=closed) from None


def _json(body: bytes) -> dict:
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}

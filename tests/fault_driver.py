"""A dso job run in its own process so that tests can SIGKILL it at a chosen point.

    python tests/fault_driver.py submit|sync CONFIG.json

CONFIG names the chain, the registry, the store, the paths and `kill_point`. When the job reaches
that point the driver prints ``AT <kill_point>`` and sleeps, so the test can kill it exactly there;
with no kill point it runs to the end and prints ``DONE``. The wrappers below only observe: the job
itself is the product code (dso.workflows.publish.publish, the path `dso submit` takes, and
dso.workflows.sync.sync), unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from eth_account import Account

import dso.workflows.sync as sync_module
from dso.edges.chain import Registry
from dso.edges.embed import LazyEmbedder
from dso.edges.ipfs import KuboClient, LocalStore
from dso.workflows.library import Library
from dso.workflows.publish import Outbox, publish, read_insights


def pause_if(point: str, wanted: str | None) -> None:
    if point == wanted:
        print(f"AT {point}", flush=True)
        time.sleep(600)


def main() -> None:
    mode, config = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    wanted = config.get("kill_point")
    registry = Registry.at(config["rpc_url"], config["registry"])
    store = KuboClient(config["ipfs_api"]) if config.get("ipfs_api") else LocalStore(Path(config["blocks"]))
    embedder = LazyEmbedder("minilm")  # as `dso sync` and `dso submit` do: sync never loads the model
    print("STARTED", flush=True)
    if mode == "submit":
        node = Account.from_key(os.environ["DSO_TEST_NODE_KEY"])
        real_put, real_submit = store.put, registry.submit_batch

        def put(data: bytes) -> str:
            cid = real_put(data)
            pause_if("pinned", wanted)
            return cid

        def submit_batch(*args, **kwargs):
            result = real_submit(*args, **kwargs)
            pause_if("committed", wanted)
            return result

        store.put, registry.submit_batch = put, submit_batch
        publish(read_insights(Path(config["jsonl"])), node, lambda: embedder, Outbox(Path(config["outbox"])), lambda: (store, registry))
    else:
        real_write = sync_module.atomic_write_text

        def write_checkpoint(path, text):
            pause_if("checkpoint", wanted)
            real_write(path, text)

        sync_module.atomic_write_text = write_checkpoint
        with Library(Path(config["library"]), embedder) as library:
            real_aggregate = library.aggregate

            def aggregate(*args, **kwargs):
                pause_if("aggregate", wanted)
                return real_aggregate(*args, **kwargs)

            library.aggregate = aggregate
            sync_module.sync(registry, store, library, Path(config["state"]),
                             progress=lambda root, done, total: pause_if(f"stored-{done}", wanted))
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
